/* The number of mappings stays far below vm.max_map_count: under 5% of it while 100k blocks
   of mixed sizes (small to huge) are live, after half of them are freed at random and
   replaced, and after everything is freed and purged. */
#include "limits.h"

#define BLOCKS 100000

static size_t map_count(void) {
    FILE *f = fopen("/proc/self/maps", "r");
    CHECK(f != NULL);
    size_t n = 0;
    int c;
    while ((c = fgetc(f)) != EOF) n += c == '\n';
    fclose(f);
    return n;
}

static size_t max_map_count(void) {
    FILE *f = fopen("/proc/sys/vm/max_map_count", "r");
    CHECK(f != NULL);
    size_t n = 0;
    CHECK(fscanf(f, "%zu", &n) == 1);
    fclose(f);
    return n;
}

/* Mostly small, some medium and large, one in 1000 huge (1-4 MiB): about 1 GiB in all. */
static size_t mixed_size(uint64_t *s) {
    uint64_t r = rnd(s);
    switch (r % 1000) {
    case 0: return (r >> 12) % (3u << 20) + (1u << 20) + 1;
    case 1: case 2: case 3: case 4: case 5: return (r >> 12) % (1u << 20) + 1;
    default:
        if (r % 10 == 0) return (r >> 12) % 65536 + 1;
        return (r >> 12) % 1024 + 1;
    }
}

static void *blocks[BLOCKS];

static void *alloc_touched(uint64_t *s) {
    size_t n = mixed_size(s);
    char *p = malloc(n);
    CHECK(p != NULL);
    p[0] = 1;
    p[n - 1] = 1;
    return p;
}

int main(void) {
    size_t limit = max_map_count() / 20;
    size_t before = map_count();
    uint64_t s = 42;
    for (int i = 0; i < BLOCKS; i++) blocks[i] = alloc_touched(&s);
    size_t live = map_count();
    /* Free half at random, allocate replacements: holes everywhere. */
    for (int i = 0; i < BLOCKS; i++) {
        int k = (int)(rnd(&s) % BLOCKS);
        free(blocks[k]);
        blocks[k] = alloc_touched(&s);
    }
    size_t churned = map_count();
    for (int i = 0; i < BLOCKS; i += 2) free(blocks[i]);
    size_t half = map_count();
    for (int i = 1; i < BLOCKS; i += 2) free(blocks[i]);
    size_t freed = map_count();
    /* Past the purge delay, with activity that reaches the slow paths. */
    sleep_ms(300);
    for (int i = 0; i < BLOCKS; i++) blocks[i] = malloc(64);
    for (int i = 0; i < BLOCKS; i++) free(blocks[i]);
    size_t purged = map_count();
    CHECK(malloc_trim(0) >= 0);
    size_t trimmed = map_count();
    printf("mappings: %zu at start, %zu with %d blocks live, %zu after churn, %zu with half "
           "freed, %zu all freed, %zu after purge, %zu after malloc_trim(0); limit %zu\n",
           before, live, BLOCKS, churned, half, freed, purged, trimmed, limit);
    size_t counts[] = {live, churned, half, freed, purged, trimmed};
    for (size_t i = 0; i < sizeof counts / sizeof counts[0]; i++)
        CHECKF(counts[i] < limit, "%zu mappings (step %zu), limit %zu (5%% of vm.max_map_count)",
               counts[i], i, limit);
    fflush(stdout);
    return 0;
}
