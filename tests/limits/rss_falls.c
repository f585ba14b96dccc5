/* Freed memory goes back to the OS: after 1 GiB of blocks is allocated, touched and freed,
   RSS falls once the purge delay has passed and the allocator has run a little (pagebreak
   purges lazily, on allocator activity), and malloc_trim(0) leaves it low. Three rounds:
   256-byte blocks, 256 KiB blocks (slot runs in segments), 2 MiB blocks (own mappings). */
#include "limits.h"

#define TOTAL (1ull << 30)

static void round_of(size_t size) {
    size_t n = TOTAL / size;
    void **blocks = malloc(n * sizeof *blocks);
    CHECK(blocks != NULL);
    size_t base = vm_rss();
    for (size_t i = 0; i < n; i++) {
        char *p = malloc(size);
        CHECKF(p != NULL, "malloc(%zu) #%zu", size, i);
        for (size_t j = 0; j < size; j += 4096) p[j] = 1;
        p[size - 1] = 1;
        blocks[i] = p;
    }
    size_t peak = vm_rss();
    for (size_t i = 0; i < n; i++) free(blocks[i]);
    free(blocks);
    size_t at_free = vm_rss();
    /* Wait out the purge delay (default 25 ms), then give the allocator activity. */
    sleep_ms(300);
    for (int i = 0; i < 500; i++) free(malloc(1));
    size_t purged = vm_rss();
    CHECK(malloc_trim(0) >= 0);
    size_t trimmed = vm_rss();
    printf("%7zu-byte blocks: RSS %.0f MiB before, %.0f MiB peak, %.0f MiB right after free, "
           "%.0f MiB after the purge delay, %.0f MiB after malloc_trim(0)\n",
           size, MIB(base), MIB(peak), MIB(at_free), MIB(purged), MIB(trimmed));
    CHECKF(peak - base >= TOTAL * 9 / 10, "RSS grew by only %.0f MiB for 1 GiB of blocks",
           MIB(peak - base));
    CHECKF(purged < peak / 4, "%zu-byte blocks: RSS %.0f MiB after the purge delay, peak %.0f MiB",
           size, MIB(purged), MIB(peak));
    CHECKF(trimmed <= purged + (1u << 20) && trimmed < peak / 8,
           "%zu-byte blocks: RSS %.0f MiB after malloc_trim(0), %.0f MiB before it, peak %.0f MiB",
           size, MIB(trimmed), MIB(purged), MIB(peak));
}

int main(void) {
    free(malloc(100));
    round_of(256);
    round_of(256u << 10);
    round_of(2u << 20);
    fflush(stdout);
    return 0;
}
