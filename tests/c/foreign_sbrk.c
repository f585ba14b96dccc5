/* Other code in the process moves the program break (sbrk) between mallocs: the
   allocator must neither hand out that memory nor lose its own blocks. */
#include "common.h"

#define N 3000

struct region {
    unsigned char *p;
    size_t n;
};

int main(void) {
    static unsigned char *bl[N];
    static size_t sz[N];
    static struct region mine[N];
    int nmine = 0;
    uint64_t s = 2024;
    for (int i = 0; i < N; i++) {
        sz[i] = rnd_size(&s) % 200000 + 1;
        bl[i] = malloc(sz[i]);
        CHECKF(bl[i] != NULL, "malloc(%zu)", sz[i]);
        fill(bl[i], sz[i], (uint32_t)i);
        if (i % 7 == 0) {
            size_t n = 4096 * (1 + rnd(&s) % 16) + rnd(&s) % 100;
            void *q = sbrk((intptr_t)n);
            CHECK(q != (void *)-1);
            mine[nmine].p = q;
            mine[nmine].n = n;
            memset(q, 0x77, n);
            nmine++;
        }
        if (i % 50 == 49) {
            /* Give back our latest sbrk region when nothing was placed above it. */
            if (nmine > 0 && sbrk(0) == mine[nmine - 1].p + mine[nmine - 1].n) {
                CHECK(sbrk(-(intptr_t)mine[nmine - 1].n) != (void *)-1);
                nmine--;
            }
        }
        if (i % 3 == 0 && i > 0) {
            int k = (int)(rnd(&s) % (uint64_t)i);
            if (bl[k]) {
                CHECKF(verify(bl[k], sz[k], (uint32_t)k) == sz[k], "block %d", k);
                free(bl[k]);
                bl[k] = NULL;
            }
        }
    }
    for (int r = 0; r < nmine; r++)
        for (size_t k = 0; k < mine[r].n; k++)
            CHECKF(mine[r].p[k] == 0x77, "sbrk region %d byte %zu overwritten", r, k);
    for (int i = 0; i < N; i++)
        if (bl[i]) {
            CHECKF(verify(bl[i], sz[i], (uint32_t)i) == sz[i], "block %d", i);
            free(bl[i]);
        }
    return 0;
}
