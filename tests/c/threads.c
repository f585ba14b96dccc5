/* 8 threads share an array of slots: blocks allocated on one thread are mostly
   freed by another. Contents are checked before every free. */
#include "common.h"
#include <pthread.h>

#define THREADS 8
#define SLOTS 4096
#define OPS 60000

struct slot {
    unsigned char *p;
    size_t n;
    uint32_t seed;
    int owner;
};

static struct slot slots[SLOTS];
static pthread_mutex_t locks[64];
static long cross_frees[THREADS];

/* Large blocks are checked at their ends and every 512th byte, to keep this fast. */
static void mark(unsigned char *p, size_t n, uint32_t seed) {
    if (n <= 1024) {
        fill(p, n, seed);
        return;
    }
    for (size_t i = 0; i < 64; i++) p[i] = pat(seed, i), p[n - 1 - i] = pat(seed, n - 1 - i);
    for (size_t i = 64; i < n - 64; i += 512) p[i] = pat(seed, i);
}

static void check_mark(const unsigned char *p, size_t n, uint32_t seed) {
    if (n <= 1024) {
        size_t bad = verify(p, n, seed);
        CHECKF(bad == n, "%zu-byte block %p: byte %zu", n, (const void *)p, bad);
        return;
    }
    for (size_t i = 0; i < 64; i++) {
        CHECKF(p[i] == pat(seed, i), "%zu-byte block: byte %zu", n, i);
        CHECKF(p[n - 1 - i] == pat(seed, n - 1 - i), "%zu-byte block: byte %zu", n, n - 1 - i);
    }
    for (size_t i = 64; i < n - 64; i += 512)
        CHECKF(p[i] == pat(seed, i), "%zu-byte block: byte %zu", n, i);
}

/* After realloc: the first `keep` bytes of a block marked with size n. */
static void check_prefix(const unsigned char *p, size_t keep, size_t n, uint32_t seed) {
    if (n <= 1024) {
        CHECKF(verify(p, keep, seed) == keep, "realloc lost bytes of a %zu-byte block", n);
        return;
    }
    for (size_t i = 0; i < 64 && i < keep; i++)
        CHECKF(p[i] == pat(seed, i), "realloc %zu -> %zu: byte %zu", n, keep, i);
    for (size_t i = 64; i < keep && i < n - 64; i += 512)
        CHECKF(p[i] == pat(seed, i), "realloc %zu -> %zu: byte %zu", n, keep, i);
}

static void *worker(void *arg) {
    int id = (int)(intptr_t)arg;
    uint64_t s = 0x9E3779B97F4A7C15ull * (uint64_t)(id + 1);
    for (int op = 0; op < OPS; op++) {
        size_t k = rnd(&s) % SLOTS;
        pthread_mutex_t *m = &locks[k % 64];
        pthread_mutex_lock(m);
        struct slot taken = slots[k];
        slots[k].p = NULL;
        pthread_mutex_unlock(m);
        if (taken.p) {
            check_mark(taken.p, taken.n, taken.seed);
            if (taken.owner != id) cross_frees[id]++;
            if (rnd(&s) % 8 == 0) {
                /* Grow or shrink it here, on another thread than its allocator. */
                size_t n = rnd_size(&s);
                size_t keep = n < taken.n ? n : taken.n;
                unsigned char *q = realloc(taken.p, n);
                CHECK(q != NULL);
                check_prefix(q, keep, taken.n, taken.seed);
                free(q);
            } else {
                free(taken.p);
            }
            continue;
        }
        struct slot mine = {NULL, rnd_size(&s), (uint32_t)rnd(&s), id};
        switch (rnd(&s) % 8) {
        case 0: mine.p = calloc(1, mine.n); break;
        case 1: mine.p = aligned_alloc(256, mine.n); break;
        default: mine.p = malloc(mine.n);
        }
        CHECKF(mine.p != NULL, "allocating %zu bytes", mine.n);
        CHECK(aligned_to(mine.p, 16));
        mark(mine.p, mine.n, mine.seed);
        pthread_mutex_lock(m);
        if (!slots[k].p) {
            slots[k] = mine;
            mine.p = NULL;
        }
        pthread_mutex_unlock(m);
        free(mine.p);
    }
    return NULL;
}

int main(void) {
    for (int i = 0; i < 64; i++) pthread_mutex_init(&locks[i], NULL);
    for (int round = 0; round < 2; round++) {
        pthread_t t[THREADS];
        for (int i = 0; i < THREADS; i++)
            CHECK(pthread_create(&t[i], NULL, worker, (void *)(intptr_t)i) == 0);
        for (int i = 0; i < THREADS; i++) CHECK(pthread_join(t[i], NULL) == 0);
    }
    /* The main thread frees what the exited threads left behind. */
    for (int k = 0; k < SLOTS; k++)
        if (slots[k].p) {
            check_mark(slots[k].p, slots[k].n, slots[k].seed);
            free(slots[k].p);
        }
    long cross = 0;
    for (int i = 0; i < THREADS; i++) cross += cross_frees[i];
    CHECKF(cross > OPS, "only %ld cross-thread frees", cross);
    return 0;
}
