/* malloc and free: usable sizes, alignment, no overlap, tiny and huge sizes, errno. */
#include "common.h"

#define LIVE 20000

struct blk {
    unsigned char *p;
    size_t n;
};

static int by_addr(const void *a, const void *b) {
    const struct blk *x = a, *y = b;
    return x->p < y->p ? -1 : x->p > y->p;
}

/* Every byte of [p, p+n) writable and read back; 16-byte aligned. */
static void check_block(void *p, size_t n, uint32_t seed) {
    CHECKF(p != NULL, "malloc(%zu)", n);
    CHECKF(aligned_to(p, 16), "malloc(%zu) = %p", n, p);
    fill(p, n, seed);
    CHECKF(verify(p, n, seed) == n, "malloc(%zu) = %p", n, p);
}

/* Fill and check a big block quickly, a word at a time. */
static void check_big(size_t n) {
    uint64_t *w = malloc(n);
    CHECKF(w != NULL, "malloc(%zu)", n);
    CHECK(aligned_to(w, 16));
    size_t words = n / 8;
    for (size_t i = 0; i < words; i++) w[i] = i * 0x9E3779B97F4A7C15ull;
    for (size_t i = 0; i < words; i++)
        CHECKF(w[i] == i * 0x9E3779B97F4A7C15ull, "malloc(%zu): word %zu", n, i);
    free(w);
}

int main(void) {
    /* Tiny sizes: unique, freeable, usable. */
    void *z1 = malloc(0), *z2 = malloc(0);
    CHECK(z1 != NULL && z2 != NULL && z1 != z2);
    CHECK(aligned_to(z1, 16) && aligned_to(z2, 16));
    free(z1);
    free(z2);
    unsigned char *one = malloc(1);
    CHECK(one != NULL);
    *one = 0x5a;
    CHECK(*one == 0x5a);
    free(one);

    /* Every size up to 4 KiB, then a spread up to 4 MiB. */
    for (size_t n = 1; n <= 4096; n++) {
        void *p = malloc(n);
        check_block(p, n, (uint32_t)n);
        free(p);
    }
    for (size_t n = 4096; n <= (4u << 20); n = n * 5 / 4 + 1) {
        void *p = malloc(n);
        check_block(p, n, (uint32_t)n);
        free(p);
    }

    /* Many live blocks: none overlaps another, all keep their contents. */
    static struct blk b[LIVE];
    uint64_t s = 0x1234567;
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < LIVE; i++) {
            if (b[i].p && (round == 0 || rnd(&s) % 2)) continue;
            if (b[i].p) free(b[i].p);
            b[i].n = rnd_size(&s) % 8192 + (rnd(&s) % 64 == 0 ? 100000 : 0);
            b[i].p = malloc(b[i].n);
            CHECKF(b[i].p != NULL, "malloc(%zu)", b[i].n);
            CHECKF(aligned_to(b[i].p, 16), "malloc(%zu) = %p", b[i].n, (void *)b[i].p);
            fill(b[i].p, b[i].n, (uint32_t)i);
        }
        /* Free a random half before the next round refills the holes. */
        for (int i = 0; i < LIVE; i++)
            if (rnd(&s) % 2) {
                CHECKF(verify(b[i].p, b[i].n, (uint32_t)i) == b[i].n, "block %d", i);
                free(b[i].p);
                b[i].p = NULL;
            }
        for (int i = 0; i < LIVE; i++)
            if (!b[i].p) {
                b[i].n = rnd_size(&s);
                b[i].p = malloc(b[i].n);
                CHECK(b[i].p != NULL);
                fill(b[i].p, b[i].n, (uint32_t)i);
            }
        for (int i = 0; i < LIVE; i++)
            CHECKF(verify(b[i].p, b[i].n, (uint32_t)i) == b[i].n, "block %d (%zu bytes)", i,
                   b[i].n);
    }
    struct blk sorted[LIVE];
    memcpy(sorted, b, sizeof b);
    qsort(sorted, LIVE, sizeof sorted[0], by_addr);
    for (int i = 1; i < LIVE; i++)
        CHECKF(sorted[i - 1].p + sorted[i - 1].n <= sorted[i].p, "%p+%zu overlaps %p",
               (void *)sorted[i - 1].p, sorted[i - 1].n, (void *)sorted[i].p);
    for (int i = 0; i < LIVE; i++) free(b[i].p);

    /* Large blocks, twice each (the second may come from a cache). */
    for (int rep = 0; rep < 2; rep++) {
        check_big(64u << 20);
        check_big(256u << 20);
    }

    /* Impossible sizes: NULL with ENOMEM. */
    errno = 0;
    CHECK(malloc(opaque(SIZE_MAX)) == NULL);
    CHECK(errno == ENOMEM);
    errno = 0;
    CHECK(malloc(opaque((size_t)PTRDIFF_MAX + 1)) == NULL);
    CHECK(errno == ENOMEM);
    errno = 0;
    CHECK(malloc(opaque(SIZE_MAX - 4096)) == NULL);
    CHECK(errno == ENOMEM);
    /* The heap still works after a failure. */
    void *after = malloc(100);
    check_block(after, 100, 7);
    free(after);

    /* free(NULL) is a no-op; free keeps errno, for small and large blocks. */
    errno = 1234;
    free(NULL);
    CHECK(errno == 1234);
    size_t sizes[] = {16, 1000, 100000, 8u << 20, 64u << 20};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        void *p = malloc(sizes[i]);
        CHECK(p != NULL);
        memset(p, 1, sizes[i]);
        errno = 1234;
        free(p);
        CHECKF(errno == 1234, "free of a %zu-byte block changed errno to %d", sizes[i], errno);
    }
    return 0;
}
