/* calloc: zeroed memory (also when reusing dirty memory), overflow, tiny and huge sizes. */
#include "common.h"

/* calloc(nmemb, size) must be zero everywhere, even right after the same
   memory was dirtied and freed. */
static void dirty_then_calloc(size_t nmemb, size_t size, int reps) {
    size_t n = nmemb * size;
    for (int r = 0; r < reps; r++) {
        unsigned char *d = malloc(n);
        CHECK(d != NULL);
        memset(d, 0xAA, n);
        free(d);
        unsigned char *c = calloc(nmemb, size);
        CHECKF(c != NULL, "calloc(%zu, %zu)", nmemb, size);
        CHECKF(aligned_to(c, 16), "calloc(%zu, %zu) = %p", nmemb, size, (void *)c);
        size_t nz = first_nonzero(c, n);
        CHECKF(nz == n, "calloc(%zu, %zu): byte %zu is 0x%02x", nmemb, size, nz, c[nz]);
        memset(c, 0xAA, n);
        free(c);
    }
}

int main(void) {
    /* Tiny. */
    void *p = calloc(0, 0);
    CHECK(p != NULL);
    free(p);
    p = calloc(0, 16);
    CHECK(p != NULL);
    free(p);
    unsigned char *b = calloc(1, 1);
    CHECK(b != NULL && b[0] == 0);
    free(b);

    /* 16 B .. 16 MiB, powers of two and odd sizes between them. */
    for (size_t n = 16; n <= (16u << 20); n *= 2) {
        int reps = n <= 65536 ? 50 : 6;
        dirty_then_calloc(1, n, reps);
        dirty_then_calloc(n / 16, 16, 2);
        dirty_then_calloc(1, n + n / 3 + 1, reps);
    }

    /* Many dirty blocks freed together, then calloc'ed back. */
    enum { N = 2000 };
    static void *blocks[N];
    static size_t sizes[N];
    uint64_t s = 99;
    for (int round = 0; round < 4; round++) {
        for (int i = 0; i < N; i++) {
            sizes[i] = rnd_size(&s);
            blocks[i] = malloc(sizes[i]);
            CHECK(blocks[i] != NULL);
            memset(blocks[i], 0xAA, sizes[i]);
        }
        for (int i = 0; i < N; i++) free(blocks[i]);
        for (int i = 0; i < N; i++) {
            unsigned char *c = calloc(1, sizes[i]);
            CHECK(c != NULL);
            size_t nz = first_nonzero(c, sizes[i]);
            CHECKF(nz == sizes[i], "calloc(1, %zu): byte %zu nonzero", sizes[i], nz);
            memset(c, 0xAA, sizes[i]);
            blocks[i] = c;
        }
        for (int i = 0; i < N; i++) free(blocks[i]);
    }

    /* Large: 64 MiB and 256 MiB, zero throughout (checked a word at a time). */
    size_t big[] = {64u << 20, 256u << 20};
    for (int i = 0; i < 2; i++) {
        for (int rep = 0; rep < 2; rep++) {
            uint64_t *w = calloc(big[i] / 8, 8);
            CHECKF(w != NULL, "calloc(%zu, 8)", big[i] / 8);
            for (size_t k = 0; k < big[i] / 8; k++) CHECKF(w[k] == 0, "word %zu", k);
            memset(w, 0xAA, big[i]);
            free(w);
        }
    }

    /* Overflow of nmemb * size: NULL with ENOMEM. */
    struct { size_t nmemb, size; } ov[] = {
        {SIZE_MAX / 2, 4}, {SIZE_MAX, SIZE_MAX}, {(size_t)1 << 32, (size_t)1 << 32},
        {SIZE_MAX, 2}, {2, SIZE_MAX}, {((size_t)1 << 63) + 1, 2},
    };
    for (size_t i = 0; i < sizeof ov / sizeof ov[0]; i++) {
        errno = 0;
        void *q = calloc(ov[i].nmemb, ov[i].size);
        CHECKF(q == NULL, "calloc(%zu, %zu) = %p", ov[i].nmemb, ov[i].size, q);
        CHECKF(errno == ENOMEM, "calloc(%zu, %zu): errno %d", ov[i].nmemb, ov[i].size, errno);
    }
    /* No overflow but too big: NULL with ENOMEM. */
    errno = 0;
    CHECK(calloc(opaque(SIZE_MAX), 1) == NULL);
    CHECK(errno == ENOMEM);
    errno = 0;
    CHECK(calloc(1, opaque((size_t)PTRDIFF_MAX + 1)) == NULL);
    CHECK(errno == ENOMEM);
    return 0;
}
