/* free_sized and free_aligned_sized (C23; glibc >= 2.39). Looked up with dlsym so the
   test builds on older glibc; pagebreak must export both. */
#include "common.h"

int main(void) {
    free_sized_fn fs = get_free_sized();
    free_aligned_sized_fn fas = get_free_aligned_sized();
    if (is_pagebreak()) {
        CHECK(fs != NULL);
        CHECK(fas != NULL);
    }
    if (!fs || !fas) {
        printf("SKIP: this libc has no free_sized/free_aligned_sized\n");
        return 0;
    }

    fs(NULL, 0);
    fs(NULL, 100);
    fas(NULL, 64, 0);

    /* Sized frees of blocks of many sizes, interleaved with live blocks that must
       stay intact: a block freed into the wrong size class would be handed out
       again while still in use, or overlap a neighbour. */
    enum { N = 4000 };
    static unsigned char *bl[N];
    static size_t sz[N];
    uint64_t s = 11;
    for (int round = 0; round < 6; round++) {
        for (int i = 0; i < N; i++) {
            if (bl[i]) continue;
            sz[i] = rnd_size(&s);
            if (round % 2 && i % 2) sz[i] = rnd(&s) % 64; /* tiny sizes, 0 included */
            bl[i] = malloc(sz[i]);
            CHECK(bl[i] != NULL);
            fill(bl[i], sz[i], (uint32_t)(i + round));
        }
        for (int i = 0; i < N; i++) {
            CHECKF(verify(bl[i], sz[i], (uint32_t)(i + round)) == sz[i], "block %d", i);
            if (rnd(&s) % 2) {
                fs(bl[i], sz[i]);
                bl[i] = NULL;
            } else {
                fill(bl[i], sz[i], (uint32_t)(i + round + 1));
            }
        }
    }
    for (int i = 0; i < N; i++)
        if (bl[i]) fs(bl[i], sz[i]);

    /* calloc'ed blocks are freed with nmemb * size. */
    for (size_t n = 1; n < 100000; n = n * 3 + 1) {
        void *p = calloc(n, 3);
        CHECK(p != NULL);
        fs(p, n * 3);
    }

    /* free_aligned_sized for aligned_alloc'ed blocks, alignments 16 .. 4 MiB. */
    for (size_t a = 16; a <= (4u << 20); a *= 2) {
        size_t sizes[] = {1, 100, a, a * 2 + 7};
        for (size_t k = 0; k < 4; k++) {
            void *p = aligned_alloc(a, sizes[k]);
            CHECKF(p != NULL && aligned_to(p, a), "aligned_alloc(%zu, %zu)", a, sizes[k]);
            fill(p, sizes[k], 1);
            fas(p, a, sizes[k]);
        }
    }

    /* The heap is sound afterwards. */
    for (int i = 0; i < N; i++) {
        sz[i] = rnd_size(&s);
        bl[i] = malloc(sz[i]);
        CHECK(bl[i] != NULL);
        fill(bl[i], sz[i], (uint32_t)i);
    }
    for (int i = 0; i < N; i++) {
        CHECKF(verify(bl[i], sz[i], (uint32_t)i) == sz[i], "block %d", i);
        free(bl[i]);
    }
    return 0;
}
