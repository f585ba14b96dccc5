/* Under RLIMIT_AS (VmSize + 256 MiB) allocation fails cleanly (NULL and ENOMEM, no crash or
   abort) and works again after frees, for 1 MiB, 64 KiB and 200-byte blocks in turn: memory
   freed in one size must be usable by the next. (tests/c/rlimit.c covers RLIMIT_DATA.) */
#include "limits.h"
#include <sys/resource.h>

#define HEADROOM (256u << 20)
#define MAX_BLOCKS (2u << 20) /* more than 256 MiB of 200-byte blocks */

static void *blocks[MAX_BLOCKS]; /* in .bss: mapped before the limit is set */

/* Allocates `size`-byte blocks until malloc fails; returns how many it got. */
static size_t fill_up(size_t size) {
    size_t n = 0;
    for (;;) {
        CHECKF(n < MAX_BLOCKS, "%zu blocks of %zu bytes under RLIMIT_AS", n, size);
        errno = 0;
        void *p = malloc(size);
        if (!p) break;
        /* Touch one byte per page, and the last byte. */
        for (size_t i = 0; i < size; i += 4096) ((volatile char *)p)[i] = 1;
        ((volatile char *)p)[size - 1] = 2;
        blocks[n++] = p;
    }
    CHECKF(errno == ENOMEM, "malloc(%zu) returned NULL with errno %d", size, errno);
    /* Failing again is just as clean, and other entry points fail the same way. */
    for (int i = 0; i < 3; i++) {
        errno = 0;
        CHECK(malloc(size) == NULL && errno == ENOMEM);
        errno = 0;
        CHECK(calloc(1, size) == NULL && errno == ENOMEM);
    }
    return n;
}

static void free_all(size_t n) {
    for (size_t i = 0; i < n; i++) free(blocks[i]);
}

int main(void) {
    free(malloc(100)); /* initialise pagebreak (and stdio) before measuring */
    printf("init\n");
    size_t limit = vm_size() + HEADROOM;
    struct rlimit rl = {limit, limit};
    CHECK(setrlimit(RLIMIT_AS, &rl) == 0);

    static const size_t sizes[] = {1u << 20, 64u << 10, 200};
    for (int round = 0; round < 2; round++)
        for (int s = 0; s < 3; s++) {
            size_t size = sizes[s];
            size_t n = fill_up(size);
            printf("round %d: %zu blocks of %zu bytes (%.0f MiB) under %.0f MiB of headroom\n",
                   round, n, size, MIB(n * size), MIB(HEADROOM));
            /* Most of the headroom is usable: allocator overhead stays below half of it. */
            CHECKF(n * size >= HEADROOM / 2,
                   "only %.1f MiB of %zu-byte blocks fit in %.0f MiB of address space", 
                   MIB(n * size), size, MIB(HEADROOM));
            free_all(n);
            /* After the frees the same amount fits again. */
            size_t again = fill_up(size);
            CHECKF(again >= n - n / 20, "%zu-byte blocks: %zu fit, then only %zu after freeing",
                   size, n, again);
            free_all(again);
        }
    fflush(stdout);
    return 0;
}
