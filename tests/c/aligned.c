/* posix_memalign, aligned_alloc, memalign, valloc, pvalloc: alignment, usable size,
   EINVAL/ENOMEM, *memptr untouched on failure. */
#include "common.h"

#define SENTINEL ((void *)0x1234)

static void use(void *p, size_t n, size_t align, const char *fn) {
    CHECKF(p != NULL, "%s(%zu, %zu)", fn, align, n);
    CHECKF(aligned_to(p, align), "%s(%zu, %zu) = %p", fn, align, n, p);
    CHECKF(aligned_to(p, 16), "%s(%zu, %zu) = %p", fn, align, n, p);
    fill(p, n, (uint32_t)(align + n));
    CHECKF(verify(p, n, (uint32_t)(align + n)) == n, "%s(%zu, %zu)", fn, align, n);
}

int main(void) {
    size_t page = (size_t)sysconf(_SC_PAGESIZE);

    /* Alignments 8 .. 4 MiB and 64 MiB, each with several sizes, all live together. */
    size_t aligns[32];
    int na = 0;
    for (size_t a = 8; a <= (4u << 20); a *= 2) aligns[na++] = a;
    aligns[na++] = 64u << 20;
    for (int i = 0; i < na; i++) {
        size_t a = aligns[i];
        size_t sizes[] = {1, 8, a, a + 1, 3 * a / 2, 100};
        void *live[3 * 6];
        int nl = 0;
        for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
            size_t n = sizes[k];
            if (a >= (64u << 20) && n > a) continue; /* keep the 64 MiB case cheap */
            void *p = SENTINEL;
            CHECKF(posix_memalign(&p, a, n) == 0, "posix_memalign(%zu, %zu)", a, n);
            use(p, n, a, "posix_memalign");
            live[nl++] = p;
            /* Sizes not a multiple of the alignment are accepted since C17 (DR 460). */
            p = aligned_alloc(a, n);
            use(p, n, a, "aligned_alloc");
            live[nl++] = p;
            p = memalign(a, n);
            use(p, n, a, "memalign");
            live[nl++] = p;
        }
        for (int k = 0; k < nl; k++) free(live[k]);
    }

    /* Aligned blocks among ordinary ones: nothing overlaps, contents survive. */
    enum { N = 4000 };
    static unsigned char *bl[N];
    static size_t sz[N];
    uint64_t s = 77;
    for (int i = 0; i < N; i++) {
        sz[i] = rnd_size(&s) % 20000 + 1;
        if (i % 3 == 0) {
            size_t a = (size_t)16 << (rnd(&s) % 10);
            bl[i] = memalign(a, sz[i]);
            CHECK(bl[i] != NULL && aligned_to(bl[i], a));
        } else {
            bl[i] = malloc(sz[i]);
            CHECK(bl[i] != NULL);
        }
        fill(bl[i], sz[i], (uint32_t)i);
    }
    for (int i = 0; i < N; i++) {
        CHECKF(verify(bl[i], sz[i], (uint32_t)i) == sz[i], "block %d", i);
        free(bl[i]);
    }

    /* posix_memalign: EINVAL for a bad alignment, *memptr untouched. */
    size_t bad[] = {0, 1, 3, 4 /* sizeof(void *) / 2 */, 24, 48, 4095, sizeof(void *) / 2};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        void *p = SENTINEL;
        int r = posix_memalign(&p, bad[i], 64);
        CHECKF(r == EINVAL, "posix_memalign(%zu, 64) returned %d", bad[i], r);
        CHECKF(p == SENTINEL, "posix_memalign(%zu, 64) wrote *memptr", bad[i]);
    }
    /* ENOMEM for impossible sizes, *memptr untouched. */
    size_t huge[] = {SIZE_MAX, SIZE_MAX - 4096, (size_t)PTRDIFF_MAX + 1, (size_t)PTRDIFF_MAX};
    for (size_t i = 0; i < sizeof huge / sizeof huge[0]; i++) {
        for (size_t a = 16; a <= (1u << 22); a <<= 11) {
            void *p = SENTINEL;
            int r = posix_memalign(&p, a, huge[i]);
            CHECKF(r == ENOMEM, "posix_memalign(%zu, %zu) returned %d", a, huge[i], r);
            CHECKF(p == SENTINEL, "posix_memalign(%zu, %zu) wrote *memptr", a, huge[i]);
        }
        errno = 0;
        CHECK(aligned_alloc(64, huge[i]) == NULL);
        CHECK(errno == ENOMEM);
        errno = 0;
        CHECK(memalign(4096, huge[i]) == NULL);
        CHECK(errno == ENOMEM);
        errno = 0;
        CHECK(valloc(huge[i]) == NULL);
        CHECK(errno == ENOMEM);
    }

    /* aligned_alloc with an alignment that is no power of two: NULL and EINVAL
       (glibc >= 2.38; older glibc rounds it up, so only pagebreak is held to it). */
    if (is_pagebreak()) {
        size_t nonpow2[] = {0, 3, 24, 48, 100, 4095};
        for (size_t i = 0; i < sizeof nonpow2 / sizeof nonpow2[0]; i++) {
            errno = 0;
            void *p = aligned_alloc(nonpow2[i], 64);
            CHECKF(p == NULL, "aligned_alloc(%zu, 64) = %p", nonpow2[i], p);
            CHECKF(errno == EINVAL, "aligned_alloc(%zu, 64): errno %d", nonpow2[i], errno);
        }
    }

    /* valloc: page aligned. */
    size_t vs[] = {0, 1, 100, 4096, 4097, 100000, 5u << 20};
    for (size_t i = 0; i < sizeof vs / sizeof vs[0]; i++) {
        void *p = valloc(vs[i]);
        CHECKF(p != NULL, "valloc(%zu)", vs[i]);
        CHECKF(aligned_to(p, page), "valloc(%zu) = %p", vs[i], p);
        fill(p, vs[i], 5);
        CHECK(verify(p, vs[i], 5) == vs[i]);
        free(p);
    }

    /* pvalloc: page aligned, the size rounded up to whole pages (all usable). */
    size_t ps[] = {1, 100, 4095, 4096, 4097, 10000, 100000, 3u << 20};
    for (size_t i = 0; i < sizeof ps / sizeof ps[0]; i++) {
        size_t rounded = (ps[i] + page - 1) / page * page;
        void *p = pvalloc(ps[i]);
        CHECKF(p != NULL, "pvalloc(%zu)", ps[i]);
        CHECKF(aligned_to(p, page), "pvalloc(%zu) = %p", ps[i], p);
        CHECKF(malloc_usable_size(p) >= rounded, "pvalloc(%zu): usable %zu < %zu", ps[i],
               malloc_usable_size(p), rounded);
        fill(p, rounded, 6);
        CHECK(verify(p, rounded, 6) == rounded);
        free(p);
    }
    void *p0 = pvalloc(0);
    CHECK(p0 != NULL && aligned_to(p0, page));
    free(p0);
    /* Rounding SIZE_MAX up overflows: NULL with ENOMEM. */
    size_t povf[] = {SIZE_MAX, SIZE_MAX - page + 2, (size_t)PTRDIFF_MAX + 1};
    for (size_t i = 0; i < sizeof povf / sizeof povf[0]; i++) {
        errno = 0;
        CHECKF(pvalloc(povf[i]) == NULL, "pvalloc(%zu)", povf[i]);
        CHECKF(errno == ENOMEM, "pvalloc(%zu): errno %d", povf[i], errno);
    }
    return 0;
}
