/* cache-scratch (after Hoard's benchmark): the main thread allocates one small object per
 * thread, back to back, and hands each to a thread, which frees it and then repeatedly
 * allocates a same-sized object and writes to it. An allocator that gives the freed block
 * (or its neighbours) to the thread makes threads write to one cache line: false sharing.
 *
 *   cache_scratch ITERATIONS [THREADS] [REPETITIONS]
 */
#include <pthread.h>
#include "common.h"

#define OBJ 8

static long iterations, repetitions;

static void *work(void *arg) {
    char *obj = arg;
    free(obj);
    for (long i = 0; i < iterations; i++) {
        volatile char *p = xmalloc(OBJ);
        for (long r = 0; r < repetitions; r++)
            for (int b = 0; b < OBJ; b++) p[b] = (char)(p[b] + r + b);
        free((void *)p);
    }
    return NULL;
}

int main(int argc, char **argv) {
    iterations = arg_long(argc, argv, 1, 2000);
    int n = (int)arg_long(argc, argv, 2, ncpus() < 2 ? 2 : ncpus());
    repetitions = arg_long(argc, argv, 3, 20000);
    if (n > 256) n = 256;
    pthread_t t[256];
    char *objs[256];
    for (int i = 0; i < n; i++) objs[i] = xmalloc(OBJ);
    for (int i = 0; i < n; i++) pthread_create(&t[i], NULL, work, objs[i]);
    for (int i = 0; i < n; i++) pthread_join(t[i], NULL);
    printf("cache-scratch: %d threads, %ld iterations, %ld repetitions\n", n, iterations, repetitions);
    return 0;
}
