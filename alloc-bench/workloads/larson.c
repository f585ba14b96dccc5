/* larson-style server: each thread owns a table of live blocks and keeps replacing random
 * ones (sizes 16..512), hands some of its blocks to the next thread, which frees them, and
 * every few rounds retires by passing its table to a freshly created thread, as a server's
 * worker threads come and go. Exercises the thread-local fast path, remote frees, and heap
 * abandonment/adoption at thread exit.
 *
 *   larson ROUNDS [THREADS]     total work = THREADS * ROUNDS * 1000 replacements
 */
#include <pthread.h>
#include "common.h"

#define SLOTS 2000
#define REPLACE 1000 /* replacements per round */
#define HANDOFF 50   /* blocks given to the next thread per round */
#define ROUNDS_PER_THREAD 20

struct mailbox {
    pthread_mutex_t lock;
    void **blk;
    size_t *sz;
    size_t len, cap;
};

struct worker {
    int id;
    long rounds_left;
    uint64_t rng;
    void *blk[SLOTS];
    size_t sz[SLOTS];
};

static int nthreads;
static struct mailbox *boxes;
static pthread_mutex_t done_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t done_cond = PTHREAD_COND_INITIALIZER;
static int running;

static void *new_block(size_t n) {
    unsigned char *p = xmalloc(n);
    tag(p, n, 0x11);
    return p;
}

static void post(struct mailbox *m, void *p, size_t n) {
    pthread_mutex_lock(&m->lock);
    if (m->len == m->cap) {
        m->cap = m->cap ? m->cap * 2 : 64;
        m->blk = realloc(m->blk, m->cap * sizeof *m->blk);
        m->sz = realloc(m->sz, m->cap * sizeof *m->sz);
        if (!m->blk || !m->sz) abort();
    }
    m->blk[m->len] = p;
    m->sz[m->len] = n;
    m->len++;
    pthread_mutex_unlock(&m->lock);
}

static void drain(struct mailbox *m) {
    pthread_mutex_lock(&m->lock);
    for (size_t i = 0; i < m->len; i++) {
        check(m->blk[i], m->sz[i], 0x11, "larson");
        free(m->blk[i]);
    }
    m->len = 0;
    pthread_mutex_unlock(&m->lock);
}

static void *run(void *arg) {
    struct worker *w = arg;
    struct mailbox *next = &boxes[(w->id + 1) % nthreads];
    for (int r = 0; r < ROUNDS_PER_THREAD && w->rounds_left > 0; r++, w->rounds_left--) {
        for (int k = 0; k < REPLACE; k++) {
            size_t j = rng_next(&w->rng) % SLOTS;
            check(w->blk[j], w->sz[j], 0x11, "larson");
            free(w->blk[j]);
            w->sz[j] = rng_range(&w->rng, 16, 512);
            w->blk[j] = new_block(w->sz[j]);
        }
        for (int k = 0; k < HANDOFF; k++) {
            size_t j = rng_next(&w->rng) % SLOTS;
            post(next, w->blk[j], w->sz[j]);
            w->sz[j] = rng_range(&w->rng, 16, 512);
            w->blk[j] = new_block(w->sz[j]);
        }
        drain(&boxes[w->id]);
    }
    if (w->rounds_left > 0) {
        /* Retire: a new thread takes over this table, the way larson recycles threads. */
        pthread_t t;
        pthread_attr_t a;
        pthread_attr_init(&a);
        pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
        if (pthread_create(&t, &a, run, w) != 0) abort();
        pthread_attr_destroy(&a);
        return NULL;
    }
    for (int j = 0; j < SLOTS; j++) {
        check(w->blk[j], w->sz[j], 0x11, "larson");
        free(w->blk[j]);
    }
    pthread_mutex_lock(&done_lock);
    running--;
    pthread_cond_signal(&done_cond);
    pthread_mutex_unlock(&done_lock);
    return NULL;
}

int main(int argc, char **argv) {
    long rounds = arg_long(argc, argv, 1, 400);
    nthreads = (int)arg_long(argc, argv, 2, 4);
    boxes = calloc(nthreads, sizeof *boxes);
    struct worker *ws = calloc(nthreads, sizeof *ws);
    if (!boxes || !ws) abort();
    for (int i = 0; i < nthreads; i++) {
        pthread_mutex_init(&boxes[i].lock, NULL);
        ws[i].id = i;
        ws[i].rounds_left = rounds;
        ws[i].rng = 0x9E3779B97F4A7C15ULL * (i + 1);
        for (int j = 0; j < SLOTS; j++) {
            ws[i].sz[j] = rng_range(&ws[i].rng, 16, 512);
            ws[i].blk[j] = new_block(ws[i].sz[j]);
        }
    }
    running = nthreads;
    for (int i = 0; i < nthreads; i++) {
        pthread_t t;
        pthread_attr_t a;
        pthread_attr_init(&a);
        pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
        if (pthread_create(&t, &a, run, &ws[i]) != 0) abort();
        pthread_attr_destroy(&a);
    }
    pthread_mutex_lock(&done_lock);
    while (running > 0) pthread_cond_wait(&done_cond, &done_lock);
    pthread_mutex_unlock(&done_lock);
    for (int i = 0; i < nthreads; i++) {
        drain(&boxes[i]);
        free(boxes[i].blk);
        free(boxes[i].sz);
    }
    printf("larson: %d threads, %ld rounds\n", nthreads, rounds);
    return 0;
}
