/* Thousands of short-lived threads, each freeing blocks that earlier (now exited)
   threads allocated and leaving some of its own behind: memory must stay bounded. */
#include "common.h"
#include <pthread.h>

#define WAVES 400
#define PER_WAVE 8
#define KEEP 64

struct gift {
    unsigned char *p;
    size_t n;
    uint32_t seed;
};

/* Blocks left by the previous wave's threads, one row per thread. */
static struct gift left[PER_WAVE][KEEP];

/* A thread-specific value whose destructor frees and allocates during thread exit,
   possibly after the allocator's own per-thread cleanup has run. */
static pthread_key_t key;

static void at_exit_of_thread(void *v) {
    struct gift *g = v;
    size_t bad = verify(g->p, g->n, g->seed);
    CHECKF(bad == g->n, "block freed at thread exit: byte %zu", bad);
    free(g->p);
    void *q = malloc(g->n * 2);
    CHECK(q != NULL);
    memset(q, 1, g->n * 2);
    free(q);
    free(g);
}

static size_t rss(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    CHECK(f != NULL);
    size_t pages = 0, res = 0;
    CHECK(fscanf(f, "%zu %zu", &pages, &res) == 2);
    fclose(f);
    return res * (size_t)sysconf(_SC_PAGESIZE);
}

static void *short_life(void *arg) {
    intptr_t id = (intptr_t)arg;
    uint64_t s = 0xC0FFEEull + (uint64_t)id * 7919;
    struct gift *row = left[id % PER_WAVE];
    struct gift *g = malloc(sizeof *g);
    CHECK(g != NULL);
    g->n = (size_t)id % 3000 + 1;
    g->seed = (uint32_t)id;
    g->p = malloc(g->n);
    CHECK(g->p != NULL);
    fill(g->p, g->n, g->seed);
    CHECK(pthread_setspecific(key, g) == 0);
    /* Take over the previous thread's blocks: check, then free. */
    for (int i = 0; i < KEEP; i++)
        if (row[i].p) {
            size_t bad = verify(row[i].p, row[i].n, row[i].seed);
            CHECKF(bad == row[i].n, "inherited %zu-byte block: byte %zu", row[i].n, bad);
            free(row[i].p);
            row[i].p = NULL;
        }
    /* Work of its own, then leave KEEP blocks for the next wave. */
    void *tmp[200];
    for (int i = 0; i < 200; i++) {
        size_t n = rnd_size(&s) % 4096 + 1;
        tmp[i] = malloc(n);
        CHECK(tmp[i] != NULL);
        memset(tmp[i], 0x5C, n);
    }
    for (int i = 0; i < 200; i++) free(tmp[i]);
    for (int i = 0; i < KEEP; i++) {
        row[i].n = rnd_size(&s) % 2048 + 1;
        row[i].seed = (uint32_t)rnd(&s);
        row[i].p = malloc(row[i].n);
        CHECK(row[i].p != NULL);
        fill(row[i].p, row[i].n, row[i].seed);
    }
    return NULL;
}

int main(void) {
    size_t warm = 0;
    CHECK(pthread_key_create(&key, at_exit_of_thread) == 0);
    for (int w = 0; w < WAVES; w++) {
        pthread_t t[PER_WAVE];
        for (int i = 0; i < PER_WAVE; i++)
            CHECK(pthread_create(&t[i], NULL, short_life, (void *)(intptr_t)(w * PER_WAVE + i)) ==
                  0);
        for (int i = 0; i < PER_WAVE; i++) CHECK(pthread_join(t[i], NULL) == 0);
        if (w == 50) warm = rss();
    }
    size_t end = rss();
    /* 3200 threads have come and gone; what they left is ~1 MB at any time. */
    CHECKF(end < warm + (32u << 20), "RSS grew from %zu to %zu bytes over %d threads", warm, end,
           (WAVES - 50) * PER_WAVE);
    for (int i = 0; i < PER_WAVE; i++)
        for (int k = 0; k < KEEP; k++) {
            CHECK(verify(left[i][k].p, left[i][k].n, left[i][k].seed) == left[i][k].n);
            free(left[i][k].p);
        }
    return 0;
}
