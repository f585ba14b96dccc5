/* xmalloc-style producer/consumer: producer threads allocate blocks (16..256 bytes) in
 * batches and queue them; consumer threads free them. Nearly every free is a remote free,
 * which is what breaks allocators whose free path assumes the allocating thread.
 *
 *   xmalloc BLOCKS_K [PRODUCERS] [CONSUMERS]    allocates BLOCKS_K * 1000 blocks in total
 */
#include <pthread.h>
#include "common.h"

#define BATCH 64
#define MAX_QUEUED 256 /* bounds memory: producers wait when consumers lag */

struct batch {
    struct batch *next;
    void *blk[BATCH];
    size_t sz[BATCH];
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t not_empty = PTHREAD_COND_INITIALIZER;
static pthread_cond_t not_full = PTHREAD_COND_INITIALIZER;
static struct batch *head, *tail;
static long queued, producers_left;
static long batches_per_producer;

static void *produce(void *arg) {
    uint64_t rng = 0x51ED2701ULL + (uintptr_t)arg * 7919;
    for (long b = 0; b < batches_per_producer; b++) {
        struct batch *bt = xmalloc(sizeof *bt);
        bt->next = NULL;
        for (int i = 0; i < BATCH; i++) {
            bt->sz[i] = rng_range(&rng, 16, 256);
            bt->blk[i] = xmalloc(bt->sz[i]);
            tag(bt->blk[i], bt->sz[i], 0x22);
        }
        pthread_mutex_lock(&lock);
        while (queued >= MAX_QUEUED) pthread_cond_wait(&not_full, &lock);
        if (tail) tail->next = bt; else head = bt;
        tail = bt;
        queued++;
        pthread_cond_signal(&not_empty);
        pthread_mutex_unlock(&lock);
    }
    pthread_mutex_lock(&lock);
    producers_left--;
    pthread_cond_broadcast(&not_empty);
    pthread_mutex_unlock(&lock);
    return NULL;
}

static void *consume(void *arg) {
    (void)arg;
    for (;;) {
        pthread_mutex_lock(&lock);
        while (!head && producers_left > 0) pthread_cond_wait(&not_empty, &lock);
        struct batch *bt = head;
        if (!bt) {
            pthread_mutex_unlock(&lock);
            return NULL;
        }
        head = bt->next;
        if (!head) tail = NULL;
        queued--;
        pthread_cond_signal(&not_full);
        pthread_mutex_unlock(&lock);
        for (int i = 0; i < BATCH; i++) {
            check(bt->blk[i], bt->sz[i], 0x22, "xmalloc");
            free(bt->blk[i]);
        }
        free(bt);
    }
}

int main(int argc, char **argv) {
    long blocks = arg_long(argc, argv, 1, 20000) * 1000;
    int np = (int)arg_long(argc, argv, 2, 2), nc = (int)arg_long(argc, argv, 3, 2);
    batches_per_producer = blocks / BATCH / np;
    producers_left = np;
    pthread_t t[64];
    if (np + nc > 64) abort();
    for (int i = 0; i < np; i++) pthread_create(&t[i], NULL, produce, (void *)(uintptr_t)i);
    for (int i = 0; i < nc; i++) pthread_create(&t[np + i], NULL, consume, NULL);
    for (int i = 0; i < np + nc; i++) pthread_join(t[i], NULL);
    printf("xmalloc: %ld blocks, %d producers, %d consumers\n", batches_per_producer * BATCH * np, np, nc);
    return 0;
}
