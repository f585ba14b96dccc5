/* Under RLIMIT_DATA the allocator must fail cleanly (NULL and ENOMEM, no crash)
   once the limit is reached, and keep working for what still fits. */
#include "common.h"
#include <sys/resource.h>

static size_t vm_data(void) {
    FILE *f = fopen("/proc/self/status", "r");
    CHECK(f != NULL);
    char line[256];
    size_t kb = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmData: %zu kB", &kb) == 1) break;
    fclose(f);
    CHECK(kb > 0);
    return kb * 1024;
}

int main(void) {
    /* Warm up (and let stdio allocate) before measuring. */
    void *warm = malloc(100);
    CHECK(warm != NULL);
    free(warm);
    size_t limit = vm_data() + (256u << 20);
    struct rlimit rl = {limit, limit};
    CHECK(setrlimit(RLIMIT_DATA, &rl) == 0);

    /* 32 MiB in pieces fits under the limit. */
    enum { PIECES = 256 };
    static void *p[PIECES];
    for (int i = 0; i < PIECES; i++) {
        size_t n = i % 2 ? 200000 : 1000;
        p[i] = malloc(n);
        CHECKF(p[i] != NULL,
               "malloc(%zu) #%d failed under RLIMIT_DATA with 256 MiB of headroom: VmData "
               "grew by %zu MiB for %d KiB of blocks",
               n, i, (vm_data() + (256u << 20) - limit) >> 20, i / 2 * 201);
        fill(p[i], n, (uint32_t)i);
    }

    /* 1 GiB does not fit: NULL with ENOMEM, repeatedly, for every entry point. */
    for (int rep = 0; rep < 3; rep++) {
        errno = 0;
        CHECK(malloc(1u << 30) == NULL);
        CHECK(errno == ENOMEM);
        errno = 0;
        CHECK(calloc(1, 1u << 30) == NULL);
        CHECK(errno == ENOMEM);
        void *m = (void *)0x1234;
        CHECK(posix_memalign(&m, 1u << 21, 1u << 30) == ENOMEM);
        CHECK(m == (void *)0x1234);
        void *r = realloc(p[1], 1u << 30);
        CHECK(r == NULL);
        CHECK(verify(p[1], 200000, 1) == 200000);
    }
    /* Filling up to the limit in 1 MiB steps ends in a clean NULL. */
    static void *fillup[1024];
    int got = 0;
    while (got < 1024 && (fillup[got] = malloc(1u << 20)) != NULL) {
        memset(fillup[got], 1, 1u << 20);
        got++;
    }
    CHECKF(got < 1024, "1 GiB allocated under a 256 MiB limit");
    CHECK(errno == ENOMEM);
    for (int i = 0; i < got; i++) free(fillup[i]);

    /* Everything allocated before is intact, and small allocations still work. */
    for (int i = 0; i < PIECES; i++) {
        size_t n = i % 2 ? 200000 : 1000;
        CHECKF(verify(p[i], n, (uint32_t)i) == n, "block %d", i);
        free(p[i]);
    }
    for (int i = 0; i < 10000; i++) {
        void *q = malloc((size_t)(i % 500) + 1);
        CHECK(q != NULL);
        free(q);
    }
    return 0;
}
