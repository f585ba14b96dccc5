/* malloc_usable_size for blocks of every allocation function; malloc_trim. */
#include "common.h"

/* usable >= requested, and every usable byte may be written. */
static void check_usable(void *p, size_t n, const char *what) {
    CHECKF(p != NULL, "%s(%zu)", what, n);
    size_t u = malloc_usable_size(p);
    CHECKF(u >= n, "%s(%zu): malloc_usable_size %zu", what, n, u);
    /* pagebreak's size classes waste at most a quarter plus one granule; large
       blocks are rounded to pages. */
    if (is_pagebreak() && n > 0)
        CHECKF(u <= n + n / 4 + 4096, "%s(%zu): malloc_usable_size %zu is too generous", what,
               n, u);
    fill(p, u, (uint32_t)n);
    CHECKF(verify(p, u, (uint32_t)n) == u, "%s(%zu)", what, n);
}

int main(void) {
    CHECK(malloc_usable_size(NULL) == 0);

    for (size_t n = 0; n <= (8u << 20); n = n < 1024 ? n + 1 : n * 9 / 8) {
        void *p = malloc(n);
        check_usable(p, n, "malloc");
        free(p);
        p = calloc(1, n);
        check_usable(p, n, "calloc");
        free(p);
        p = memalign(64, n);
        check_usable(p, n, "memalign");
        free(p);
        p = malloc(n / 2 + 1);
        p = realloc(p, n + 1);
        check_usable(p, n + 1, "realloc");
        free(p);
    }

    /* Usable size of every live block stays its own while neighbours change. */
    enum { N = 5000 };
    static void *bl[N];
    static size_t us[N], req[N];
    uint64_t s = 3;
    for (int i = 0; i < N; i++) {
        size_t n = req[i] = rnd_size(&s);
        bl[i] = malloc(n);
        check_usable(bl[i], n, "malloc");
        us[i] = malloc_usable_size(bl[i]);
    }
    for (int i = 0; i < N; i += 2) free(bl[i]);
    for (int i = 1; i < N; i += 2) {
        CHECKF(malloc_usable_size(bl[i]) == us[i], "block %d: usable size changed", i);
        CHECKF(verify(bl[i], us[i], (uint32_t)req[i]) == us[i], "block %d", i);
        free(bl[i]);
    }

    /* malloc_trim: returns 0 or 1, and the heap works afterwards. */
    enum { M = 1000 };
    static void *big[M];
    for (int i = 0; i < M; i++) {
        big[i] = malloc(64 * 1024);
        CHECK(big[i] != NULL);
        memset(big[i], 1, 64 * 1024);
    }
    for (int i = 0; i < M; i++) free(big[i]);
    int r = malloc_trim(0);
    CHECKF(r == 0 || r == 1, "malloc_trim(0) returned %d", r);
    r = malloc_trim(1u << 20);
    CHECKF(r == 0 || r == 1, "malloc_trim(1 MiB) returned %d", r);
    for (int i = 0; i < M; i++) {
        big[i] = malloc(64 * 1024);
        CHECK(big[i] != NULL);
        fill(big[i], 64 * 1024, (uint32_t)i);
    }
    for (int i = 0; i < M; i++) {
        CHECK(verify(big[i], 64 * 1024, (uint32_t)i) == 64 * 1024);
        free(big[i]);
    }
    return 0;
}
