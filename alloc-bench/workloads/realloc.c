/* realloc-heavy: string-builder style. Many buffers grow by small appends with realloc to the
 * exact new length, sometimes shrink to a quarter, and are dropped when they get long. Checks
 * that contents survive every move.
 *
 *   realloc STEPS_K [THREADS]     STEPS_K * 1000 appends per thread
 */
#include <pthread.h>
#include "common.h"

#define BUFS 1000

static long steps;

static unsigned char expect(size_t pos, unsigned key) { return (unsigned char)(pos * 31 + key); }

static void *run(void *arg) {
    uint64_t rng = 0xC0FFEEULL + (uintptr_t)arg * 104729;
    unsigned char *buf[BUFS] = {0};
    size_t len[BUFS] = {0}, limit[BUFS];
    for (int i = 0; i < BUFS; i++) limit[i] = rng_range(&rng, 256, 64 * 1024);
    for (long s = 0; s < steps; s++) {
        int i = (int)(rng_next(&rng) % BUFS);
        size_t add = rng_range(&rng, 1, 100), old = len[i];
        unsigned char *p = realloc(buf[i], old + add);
        if (!p) abort();
        if (old && (p[0] != expect(0, i) || p[old - 1] != expect(old - 1, i))) {
            fprintf(stderr, "realloc: contents lost moving %zu bytes\n", old);
            abort();
        }
        for (size_t k = old; k < old + add; k++) p[k] = expect(k, i);
        buf[i] = p;
        len[i] = old + add;
        if (len[i] > limit[i]) {
            if (rng_next(&rng) & 1) {
                free(buf[i]);
                buf[i] = NULL;
                len[i] = 0;
            } else {
                len[i] /= 4;
                buf[i] = realloc(buf[i], len[i]);
                if (!buf[i] || buf[i][len[i] - 1] != expect(len[i] - 1, i)) abort();
            }
            limit[i] = rng_range(&rng, 256, 64 * 1024);
        }
    }
    for (int i = 0; i < BUFS; i++) free(buf[i]);
    return NULL;
}

int main(int argc, char **argv) {
    steps = arg_long(argc, argv, 1, 10000) * 1000;
    int n = (int)arg_long(argc, argv, 2, 2);
    pthread_t t[64];
    if (n > 64) n = 64;
    for (int i = 0; i < n; i++) pthread_create(&t[i], NULL, run, (void *)(uintptr_t)i);
    for (int i = 0; i < n; i++) pthread_join(t[i], NULL);
    printf("realloc: %d threads, %ld steps each\n", n, steps);
    return 0;
}
