/* Multi-threaded word count: THREADS threads generate text chunks, pass each chunk
   to the next thread through a queue (so buffers are freed by a thread other than
   their allocator), count words into per-thread hash maps, then merge the maps in
   parallel by hash partition. The output does not depend on scheduling.

   usage: mt_wordcount THREADS SEED */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHUNKS 2400
#define MAX_THREADS 64

static void *xmalloc(size_t n) {
    void *p = malloc(n);
    if (!p) {
        fprintf(stderr, "out of memory (%zu bytes)\n", n);
        exit(1);
    }
    return p;
}

static uint64_t rnd(uint64_t *s) {
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

/* ---- hash map of word -> count ---- */

struct node {
    struct node *next;
    uint64_t hash;
    long count;
    char word[];
};

struct map {
    struct node **buckets;
    size_t nbuckets, len;
};

static uint64_t hash(const char *w, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)w[i]) * 0x100000001b3ull;
    return h;
}

static void map_grow(struct map *m) {
    size_t nb = m->nbuckets ? m->nbuckets * 2 : 64;
    struct node **b = calloc(nb, sizeof *b);
    if (!b) exit(1);
    for (size_t i = 0; i < m->nbuckets; i++)
        for (struct node *n = m->buckets[i], *next; n; n = next) {
            next = n->next;
            n->next = b[n->hash & (nb - 1)];
            b[n->hash & (nb - 1)] = n;
        }
    free(m->buckets);
    m->buckets = b;
    m->nbuckets = nb;
}

static void map_add(struct map *m, const char *w, size_t len, uint64_t h, long count) {
    if (m->len >= m->nbuckets) map_grow(m);
    struct node **slot = &m->buckets[h & (m->nbuckets - 1)];
    for (struct node *n = *slot; n; n = n->next)
        if (n->hash == h && strncmp(n->word, w, len) == 0 && n->word[len] == 0) {
            n->count += count;
            return;
        }
    struct node *n = xmalloc(sizeof *n + len + 1);
    memcpy(n->word, w, len);
    n->word[len] = 0;
    n->hash = h;
    n->count = count;
    n->next = *slot;
    *slot = n;
    m->len++;
}

static void map_free(struct map *m) {
    for (size_t i = 0; i < m->nbuckets; i++)
        for (struct node *n = m->buckets[i], *next; n; n = next) {
            next = n->next;
            free(n);
        }
    free(m->buckets);
    m->buckets = NULL;
    m->nbuckets = m->len = 0;
}

/* ---- chunk queues, one per thread ---- */

struct chunk {
    struct chunk *next;
    size_t len;
    char *text;
};

struct queue {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct chunk *head, *tail;
};

static int nthreads;
static uint64_t seed;
static struct queue queues[MAX_THREADS];
static struct map maps[MAX_THREADS], merged[MAX_THREADS];

static void push(struct queue *q, struct chunk *c) {
    pthread_mutex_lock(&q->lock);
    c->next = NULL;
    if (q->tail) q->tail->next = c;
    else q->head = c;
    q->tail = c;
    pthread_cond_signal(&q->cond);
    pthread_mutex_unlock(&q->lock);
}

static struct chunk *pop(struct queue *q) {
    pthread_mutex_lock(&q->lock);
    while (!q->head) pthread_cond_wait(&q->cond, &q->lock);
    struct chunk *c = q->head;
    q->head = c->next;
    if (!q->head) q->tail = NULL;
    pthread_mutex_unlock(&q->lock);
    return c;
}

static int nonempty(struct queue *q) {
    pthread_mutex_lock(&q->lock);
    int r = q->head != NULL;
    pthread_mutex_unlock(&q->lock);
    return r;
}

/* Text of chunk k: skewed word choice, so some words are frequent. */
static struct chunk *make_chunk(int k) {
    static const char *syl[] = {"ka", "lo", "mi", "ne", "pu", "ra", "si", "to",
                                "vu", "ze", "an", "el", "in", "or", "us", "y"};
    uint64_t s = seed * 1000003 + (uint64_t)k + 1;
    size_t cap = 4096 + rnd(&s) % 60000;
    struct chunk *c = xmalloc(sizeof *c);
    c->text = xmalloc(cap);
    size_t len = 0;
    while (len + 64 < cap) {
        uint64_t r = rnd(&s);
        uint64_t w = (r >> 24) % (1 + (r & 0xffffff) % 300000);
        do {
            const char *y = syl[w & 15];
            while (*y) c->text[len++] = *y++;
            w >>= 4;
        } while (w);
        c->text[len++] = (r >> 60) ? ' ' : '\n';
    }
    c->len = len;
    return c;
}

static void count_chunk(struct map *m, const struct chunk *c) {
    size_t i = 0;
    while (i < c->len) {
        while (i < c->len && (c->text[i] == ' ' || c->text[i] == '\n')) i++;
        size_t start = i;
        while (i < c->len && c->text[i] != ' ' && c->text[i] != '\n') i++;
        if (i > start) map_add(m, c->text + start, i - start, hash(c->text + start, i - start), 1);
    }
}

static void *worker(void *arg) {
    int id = (int)(intptr_t)arg;
    struct queue *next = &queues[(id + 1) % nthreads];
    int produce = 0, consume = 0;
    for (int k = 0; k < CHUNKS; k++) {
        if (k % nthreads == id) produce++;
        if (k % nthreads == (id + nthreads - 1) % nthreads) consume++;
    }
    /* Interleave producing for the next thread with consuming from the previous one. */
    int k = id;
    while (produce > 0 || consume > 0) {
        if (produce > 0) {
            push(next, make_chunk(k));
            k += nthreads;
            produce--;
        }
        if (consume > 0 && (produce == 0 || nonempty(&queues[id]))) {
            struct chunk *c = pop(&queues[id]);
            count_chunk(&maps[id], c);
            free(c->text);
            free(c);
            consume--;
        }
    }
    return NULL;
}

/* Thread id merges every word whose hash falls in its partition. */
static void *merger(void *arg) {
    int id = (int)(intptr_t)arg;
    for (int t = 0; t < nthreads; t++)
        for (size_t i = 0; i < maps[t].nbuckets; i++)
            for (struct node *n = maps[t].buckets[i]; n; n = n->next)
                if ((n->hash >> 32) % (uint64_t)nthreads == (uint64_t)id)
                    map_add(&merged[id], n->word, strlen(n->word), n->hash, n->count);
    return NULL;
}

static void run(void *(*fn)(void *)) {
    pthread_t t[MAX_THREADS];
    for (int i = 0; i < nthreads; i++)
        if (pthread_create(&t[i], NULL, fn, (void *)(intptr_t)i) != 0) exit(1);
    for (int i = 0; i < nthreads; i++) pthread_join(t[i], NULL);
}

static int by_count(const void *a, const void *b) {
    const struct node *x = *(struct node *const *)a, *y = *(struct node *const *)b;
    if (x->count != y->count) return x->count < y->count ? 1 : -1;
    return strcmp(x->word, y->word);
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s THREADS SEED\n", argv[0]);
        return 2;
    }
    nthreads = atoi(argv[1]);
    seed = strtoull(argv[2], NULL, 10);
    if (nthreads < 1 || nthreads > MAX_THREADS) return 2;
    for (int i = 0; i < nthreads; i++) {
        pthread_mutex_init(&queues[i].lock, NULL);
        pthread_cond_init(&queues[i].cond, NULL);
    }
    run(worker);
    run(merger);
    /* The main thread frees what the exited workers allocated. */
    for (int i = 0; i < nthreads; i++) map_free(&maps[i]);

    size_t distinct = 0;
    long total = 0;
    for (int i = 0; i < nthreads; i++) distinct += merged[i].len;
    struct node **all = xmalloc(distinct * sizeof *all);
    size_t n = 0;
    for (int i = 0; i < nthreads; i++)
        for (size_t b = 0; b < merged[i].nbuckets; b++)
            for (struct node *x = merged[i].buckets[b]; x; x = x->next) {
                all[n++] = x;
                total += x->count;
            }
    qsort(all, n, sizeof *all, by_count);
    uint64_t digest = 0;
    for (size_t i = 0; i < n; i++)
        digest = digest * 31 + hash(all[i]->word, strlen(all[i]->word)) + (uint64_t)all[i]->count;
    printf("words %ld, distinct %zu, digest %016llx\n", total, distinct,
           (unsigned long long)digest);
    for (size_t i = 0; i < n && i < 40; i++) printf("%8ld %s\n", all[i]->count, all[i]->word);
    free(all);
    for (int i = 0; i < nthreads; i++) map_free(&merged[i]);
    return 0;
}
