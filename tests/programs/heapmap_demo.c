/* Fragments the heap on purpose, for `cargo xtask heapmap -- target/.../prog-heapmap_demo`:
   many size classes with every other block freed, threads that exit holding blocks (their
   segments are abandoned), pages freed long enough ago to be purged and pages freed just
   before exit (still resident). Exits without freeing what it kept, so the picture at exit
   shows it all. Prints one summary line.

   usage: heapmap_demo [SCALE]   (SCALE 1..16, default 4: how many blocks of each size) */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define THREADS 4
#define MAX_KEPT (1 << 20)

static void *kept[MAX_KEPT];
static size_t n_kept;
static pthread_mutex_t kept_lock = PTHREAD_MUTEX_INITIALIZER;
static int scale = 4;

static void *xmalloc(size_t n) {
    void *p = malloc(n);
    if (!p) {
        fprintf(stderr, "heapmap_demo: out of memory (%zu bytes)\n", n);
        exit(1);
    }
    memset(p, 0xab, n < 256 ? n : 256);
    return p;
}

static void keep(void *p) {
    pthread_mutex_lock(&kept_lock);
    if (n_kept < MAX_KEPT) {
        kept[n_kept++] = p;
        p = NULL;
    }
    pthread_mutex_unlock(&kept_lock);
    free(p);
}

static uint64_t rnd(uint64_t *s) {
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

/* `count` blocks of `size` bytes; every other one freed, the rest kept. */
static void checkerboard(size_t size, size_t count) {
    void **tmp = xmalloc(count * sizeof *tmp);
    for (size_t i = 0; i < count; i++) tmp[i] = xmalloc(size);
    for (size_t i = 0; i < count; i++) {
        if (i % 2) free(tmp[i]);
        else keep(tmp[i]);
    }
    free(tmp);
}

/* A thread that allocates random sizes, keeps a quarter of them and exits: its segments are
   abandoned with live blocks in them. */
static void *worker(void *arg) {
    uint64_t seed = 0x9e3779b97f4a7c15ull * ((uintptr_t)arg + 1);
    size_t n = 3000 * (size_t)scale;
    void **tmp = xmalloc(n * sizeof *tmp);
    for (size_t i = 0; i < n; i++) {
        uint64_t r = rnd(&seed);
        size_t size = r % 32 == 0 ? (r >> 8) % 30000 + 1 : (r >> 8) % 700 + 1;
        tmp[i] = xmalloc(size);
    }
    for (size_t i = 0; i < n; i++) {
        if (rnd(&seed) % 4 == 0) keep(tmp[i]);
        else free(tmp[i]);
    }
    free(tmp);
    return NULL;
}

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Allocate `bytes` in blocks of `size`, then free them all: whole pages become free. */
static void churn(size_t size, size_t bytes) {
    size_t n = bytes / size;
    void **tmp = xmalloc(n * sizeof *tmp);
    for (size_t i = 0; i < n; i++) tmp[i] = xmalloc(size);
    for (size_t i = 0; i < n; i++) free(tmp[i]);
    free(tmp);
}

int main(int argc, char **argv) {
    if (argc > 1) scale = atoi(argv[1]);
    if (scale < 1 || scale > 16) {
        fprintf(stderr, "usage: heapmap_demo [SCALE 1..16]\n");
        return 2;
    }

    /* Whole pages freed, then left alone past the purge delay: purged. */
    churn(4096, (size_t)scale << 20);
    churn(48, (size_t)scale << 19);
    sleep_ms(300);

    /* Small and medium size classes, every other block freed. */
    for (size_t size = 16; size <= 65536; size += size / 4 > 16 ? size / 4 : 16)
        checkerboard(size, (size_t)scale * 2048 * 16 / size + 8);

    /* Large blocks, every other one freed. */
    for (size_t size = 100000; size <= 900000; size += 400000)
        checkerboard(size, (size_t)scale / 2 + 2);

    /* Pages freed just before exit: still resident. */
    churn(256, (size_t)scale << 18);

    /* Last, threads that exit holding blocks: nobody adopts their segments before exit. */
    pthread_t t[THREADS];
    for (intptr_t i = 0; i < THREADS; i++)
        if (pthread_create(&t[i], NULL, worker, (void *)i) != 0) return 1;
    for (int i = 0; i < THREADS; i++) pthread_join(t[i], NULL);

    printf("heapmap_demo: %zu blocks kept, %d threads exited\n", n_kept, THREADS);
    return 0;
}
