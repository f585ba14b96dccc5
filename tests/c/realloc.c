/* realloc and reallocarray: contents kept across growth and shrinking, NULL and 0
   arguments, overflow and failure leaving the block intact. */
#include "common.h"

/* Resident set size in bytes. */
static size_t rss(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    CHECK(f != NULL);
    size_t pages = 0, res = 0;
    CHECK(fscanf(f, "%zu %zu", &pages, &res) == 2);
    fclose(f);
    return res * (size_t)sysconf(_SC_PAGESIZE);
}

/* Resizes p (holding `have` pattern bytes of `seed`) to n; the common prefix survives. */
static unsigned char *resize(unsigned char *p, size_t have, size_t n, uint32_t seed) {
    unsigned char *q = realloc(p, n);
    CHECKF(q != NULL, "realloc(%p, %zu)", (void *)p, n);
    CHECKF(aligned_to(q, 16), "realloc(%p, %zu) = %p", (void *)p, n, (void *)q);
    size_t keep = have < n ? have : n;
    size_t bad = verify(q, keep, seed);
    CHECKF(bad == keep, "realloc %zu -> %zu: byte %zu lost", have, n, bad);
    fill(q, n, seed);
    return q;
}

int main(void) {
    /* realloc(NULL, n) is malloc(n). */
    unsigned char *p = realloc(NULL, 100);
    CHECK(p != NULL && aligned_to(p, 16));
    fill(p, 100, 1);
    CHECK(verify(p, 100, 1) == 100);
    free(p);
    p = realloc(NULL, 0);
    CHECK(p != NULL);
    free(p);

    /* realloc(p, 0) frees p and returns NULL, as glibc does. */
    p = malloc(64);
    CHECK(p != NULL);
    CHECK(realloc(p, 0) == NULL);
    /* ...and really frees it: 200000 of them must not leak 200 MB. */
    size_t before = rss();
    for (int i = 0; i < 200000; i++) {
        void *q = malloc(1000);
        CHECK(q != NULL);
        memset(q, 1, 1000);
        CHECK(realloc(q, 0) == NULL);
    }
    size_t now = rss();
    size_t grown = now > before ? now - before : 0;
    CHECKF(grown < (64u << 20), "realloc(p, 0) leaks: RSS grew by %zu bytes", grown);

    /* Grow small -> large one step at a time, then shrink back, contents checked. */
    p = malloc(1);
    fill(p, 1, 7);
    size_t have = 1;
    for (size_t n = 2; n <= (32u << 20); n = n * 3 / 2 + 1) {
        p = resize(p, have, n, 7);
        have = n;
    }
    for (size_t n = have; n >= 1; n = n * 2 / 3) {
        p = resize(p, have, n, 7);
        have = n;
    }
    free(p);

    /* Every small size to every nearby size (in place or moved). */
    for (size_t a = 1; a <= 600; a += 7)
        for (size_t b = 1; b <= 600; b += 13) {
            unsigned char *q = malloc(a);
            fill(q, a, (uint32_t)(a * b));
            q = resize(q, a, b, (uint32_t)(a * b));
            free(q);
        }

    /* Many live blocks resized at random: no block disturbs another. */
    enum { N = 3000 };
    static unsigned char *bl[N];
    static size_t sz[N];
    uint64_t s = 5;
    for (int i = 0; i < N; i++) {
        sz[i] = rnd_size(&s);
        bl[i] = malloc(sz[i]);
        fill(bl[i], sz[i], (uint32_t)i);
    }
    for (int k = 0; k < 30000; k++) {
        int i = (int)(rnd(&s) % N);
        size_t n = rnd(&s) % 4 ? rnd_size(&s) : sz[i] + rnd(&s) % 64;
        bl[i] = resize(bl[i], sz[i], n, (uint32_t)i);
        sz[i] = n;
    }
    for (int i = 0; i < N; i++) {
        CHECKF(verify(bl[i], sz[i], (uint32_t)i) == sz[i], "block %d", i);
        free(bl[i]);
    }

    /* A failed realloc returns NULL with ENOMEM and leaves the block alone. */
    p = malloc(1000);
    fill(p, 1000, 3);
    errno = 0;
    CHECK(realloc(p, opaque(SIZE_MAX)) == NULL);
    CHECK(errno == ENOMEM);
    errno = 0;
    CHECK(realloc(p, opaque((size_t)PTRDIFF_MAX + 1)) == NULL);
    CHECK(errno == ENOMEM);
    CHECK(verify(p, 1000, 3) == 1000);
    p = resize(p, 1000, 5000, 3);
    free(p);

    /* Over-aligned blocks keep their contents through realloc. */
    void *al = NULL;
    CHECK(posix_memalign(&al, 4096, 3000) == 0);
    fill(al, 3000, 11);
    al = resize(al, 3000, 100000, 11);
    al = resize(al, 100000, 10, 11);
    free(al);

    /* reallocarray: like realloc(p, nmemb * size), with overflow checked. */
    p = reallocarray(NULL, 10, 10);
    CHECK(p != NULL);
    fill(p, 100, 9);
    p = reallocarray(p, 1000, 10);
    CHECK(p != NULL);
    CHECK(verify(p, 100, 9) == 100);
    fill(p, 10000, 9);
    p = reallocarray(p, 5, 10);
    CHECK(p != NULL);
    CHECK(verify(p, 50, 9) == 50);
    struct { size_t nmemb, size; } ov[] = {
        {SIZE_MAX / 2, 4}, {SIZE_MAX, SIZE_MAX}, {(size_t)1 << 32, (size_t)1 << 32},
    };
    for (size_t i = 0; i < sizeof ov / sizeof ov[0]; i++) {
        errno = 0;
        CHECKF(reallocarray(p, ov[i].nmemb, ov[i].size) == NULL, "reallocarray(p, %zu, %zu)",
               ov[i].nmemb, ov[i].size);
        CHECKF(errno == ENOMEM, "reallocarray(p, %zu, %zu): errno %d", ov[i].nmemb,
               ov[i].size, errno);
        CHECK(verify(p, 50, 9) == 50);
        errno = 0;
        CHECK(reallocarray(NULL, ov[i].nmemb, ov[i].size) == NULL);
        CHECK(errno == ENOMEM);
    }
    free(p);
    return 0;
}
