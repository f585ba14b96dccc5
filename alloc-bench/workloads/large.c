/* Large blocks: a working set of 8 blocks of 64 KiB..8 MiB (log-uniform), each replaced in
 * turn, every page written once. Shows whether large frees are cached or go back to the OS
 * (munmap + mmap + a page fault per 4 KiB each time) and how much RSS that costs or saves.
 *
 *   large ITERATIONS [THREADS]
 */
#include <pthread.h>
#include "common.h"

#define LIVE 8
#define PAGE 4096

static long iterations;

static void *run(void *arg) {
    uint64_t rng = 0xA0761D6478BD642FULL + (uintptr_t)arg;
    unsigned char *blk[LIVE] = {0};
    size_t sz[LIVE] = {0};
    for (long i = 0; i < iterations; i++) {
        int j = (int)(i % LIVE);
        if (blk[j]) {
            check(blk[j], sz[j], 0x33, "large");
            free(blk[j]);
        }
        /* 64 KiB << 0..7 gives octaves up to 8 MiB; pick a size inside the octave too. */
        size_t lo = (size_t)64 * 1024 << (rng_next(&rng) % 7);
        sz[j] = rng_range(&rng, lo, 2 * lo);
        blk[j] = xmalloc(sz[j]);
        for (size_t off = 0; off < sz[j]; off += PAGE) blk[j][off] = (unsigned char)off;
        tag(blk[j], sz[j], 0x33);
    }
    for (int j = 0; j < LIVE; j++) free(blk[j]);
    return NULL;
}

int main(int argc, char **argv) {
    iterations = arg_long(argc, argv, 1, 4000);
    int n = (int)arg_long(argc, argv, 2, 2);
    pthread_t t[64];
    if (n > 64) n = 64;
    for (int i = 0; i < n; i++) pthread_create(&t[i], NULL, run, (void *)(uintptr_t)i);
    for (int i = 0; i < n; i++) pthread_join(t[i], NULL);
    printf("large: %d threads, %ld iterations\n", n, iterations);
    return 0;
}
