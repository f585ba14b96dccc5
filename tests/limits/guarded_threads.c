// env: PAGEBREAK_GUARDED=1
/* Guarded sampling of every eligible allocation from 4 threads that share a table of live
   blocks: each thread replaces random entries, freeing blocks other threads allocated. Every
   block's contents are checked before it is freed; the number of mappings stays bounded and
   guarded blocks keep being handed out. */
#include "limits.h"
#include "guarded.h"
#include <pthread.h>
#include <stdatomic.h>

#define THREADS 4
#define PER_THREAD 250000
#define TABLE 4096

static _Atomic(char *) table[TABLE];
static atomic_long guarded_seen;

static size_t map_count(void) {
    FILE *f = fopen("/proc/self/maps", "r");
    CHECK(f != NULL);
    size_t n = 0;
    int c;
    while ((c = fgetc(f)) != EOF) n += c == '\n';
    fclose(f);
    return n;
}

/* A block: 8 bytes of size, then a pattern seeded by the size over its first 56 bytes and
   its last 8 (blocks of 72 bytes or more). */
static char *make(uint64_t *s) {
    size_t n = 16 + (rnd(s) >> 8) % 4000;
    char *p = malloc(n);
    CHECK(p != NULL);
    memcpy(p, &n, sizeof n);
    size_t head = n - 8 < 56 ? n - 8 : 56;
    fill(p + 8, head, (uint32_t)n);
    if (n >= 72) fill(p + n - 8, 8, (uint32_t)n + 1);
    return p;
}

static void retire(char *p) {
    size_t n;
    memcpy(&n, p, sizeof n);
    CHECKF(n >= 16 && n < 4016, "block %p damaged (size %zu)", (void *)p, n);
    size_t head = n - 8 < 56 ? n - 8 : 56;
    CHECKF(verify(p + 8, head, (uint32_t)n) == head &&
               (n < 72 || verify(p + n - 8, 8, (uint32_t)n + 1) == 8),
           "block %p damaged", (void *)p);
    free(p);
}

static void *worker(void *arg) {
    uint64_t s = (uint64_t)(uintptr_t)arg * 0x9e3779b97f4a7c15ull + 1;
    long seen = 0;
    for (long i = 0; i < PER_THREAD; i++) {
        char *p = make(&s);
        if (i % 256 == 0) seen += guarded_right(p);
        char *old = atomic_exchange(&table[rnd(&s) % TABLE], p);
        if (old) retire(old);
    }
    atomic_fetch_add(&guarded_seen, seen);
    return NULL;
}

int main(void) {
    free(malloc(1));
    size_t maps0 = map_count();
    pthread_t t[THREADS];
    for (long i = 0; i < THREADS; i++) CHECK(pthread_create(&t[i], NULL, worker, (void *)(i + 1)) == 0);
    for (int i = 0; i < THREADS; i++) CHECK(pthread_join(t[i], NULL) == 0);
    size_t maps1 = map_count(), rss1 = vm_rss();
    for (int k = 0; k < TABLE; k++)
        if (table[k]) retire(table[k]);
    size_t maps2 = map_count();
    printf("guarded threads: %d threads x %d blocks; mappings %zu at start, %zu at the end "
           "(%zu all freed); RSS %.1f MiB; %ld of %d probed blocks guarded\n",
           THREADS, PER_THREAD, maps0, maps1, maps2, MIB(rss1), (long)guarded_seen,
           THREADS * PER_THREAD / 256);
    size_t map_limit = maps0 + 2 * 256 + 64;
    CHECKF(maps1 < map_limit && maps2 < map_limit, "mappings %zu/%zu, limit %zu", maps1, maps2,
           map_limit);
    CHECKF(guarded_seen > 0, "no guarded block seen");
    fflush(stdout);
    return 0;
}
