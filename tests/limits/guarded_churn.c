// env: PAGEBREAK_GUARDED=1
/* Guarded sampling of every eligible allocation (PAGEBREAK_GUARDED=1) stays bounded: 10
   million blocks allocated and freed (16 B to 48 KiB; those up to 16 KiB eligible), first
   each freed at once (every one guarded: the pool's quarantine turns over), then with 16384
   live at a time (the pool fills and sampled allocations fall back to normal blocks). The
   number of mappings and RSS stay flat, contents survive, and blocks are guarded all along. */
#include "limits.h"
#include "guarded.h"

#define TOTAL 10000000L
#define AT_ONCE 100000L
#define LIVE 16384

static size_t map_count(void) {
    FILE *f = fopen("/proc/self/maps", "r");
    CHECK(f != NULL);
    size_t n = 0;
    int c;
    while ((c = fgetc(f)) != EOF) n += c == '\n';
    fclose(f);
    return n;
}

/* 90% up to 1 KiB, 9% up to 16 KiB, 1% up to 48 KiB (not eligible). */
static size_t churn_size(uint64_t *s) {
    uint64_t r = rnd(s);
    switch (r % 100) {
    case 0: return (r >> 8) % (48u << 10) + 1;
    case 1: case 2: case 3: case 4: case 5: case 6: case 7: case 8: case 9:
        return (r >> 8) % (16u << 10) + 1;
    default: return (r >> 8) % 1024 + 1;
    }
}

static char *blocks[LIVE];
static size_t sizes[LIVE];

/* The block's first and last bytes carry its index. */
static void mark(char *p, size_t n, long i) {
    p[n - 1] = (char)(i >> 8);
    p[0] = (char)i;
}

static void check_mark(const char *p, size_t n, long i) {
    CHECKF(p[0] == (char)i && (n == 1 || p[n - 1] == (char)(i >> 8)),
           "block %ld (%zu bytes) damaged", i, n);
}

int main(void) {
    uint64_t s = 7;
    free(malloc(1)); /* start pagebreak (and the pool) before the baseline */
    size_t maps0 = map_count(), rss0 = vm_rss();
    long guarded = 0, probed = 0;

    /* Freed at once: every eligible block is guarded. */
    for (long i = 0; i < AT_ONCE; i++) {
        size_t n = churn_size(&s);
        char *p = malloc(n);
        CHECK(p != NULL);
        mark(p, n, i);
        if (n <= (16u << 10) && i % 97 == 0) {
            CHECKF(guarded_right(p), "block %ld (%zu bytes) at %p not guarded", i, n, (void *)p);
            guarded++;
        }
        check_mark(p, n, i);
        free(p);
    }
    size_t maps1 = map_count(), rss1 = vm_rss();

    /* 16384 live: the pool fills, and falls back. */
    size_t maps_max = 0, rss_max = 0, rss_mid = 0;
    for (long i = 0; i < TOTAL - AT_ONCE; i++) {
        int k = (int)(i % LIVE);
        if (blocks[k]) {
            check_mark(blocks[k], sizes[k], i - LIVE);
            free(blocks[k]);
        }
        size_t n = churn_size(&s);
        char *p = malloc(n);
        CHECK(p != NULL);
        mark(p, n, i);
        blocks[k] = p;
        sizes[k] = n;
        if (i % 64 == 0 && n <= (16u << 10)) {
            probed++;
            guarded += guarded_right(p);
        }
        if (i % 1000000 == 999999) {
            size_t m = map_count(), r = vm_rss();
            maps_max = m > maps_max ? m : maps_max;
            rss_max = r > rss_max ? r : rss_max;
            if (i == 2999999) rss_mid = r;
        }
    }
    for (int k = 0; k < LIVE; k++) free(blocks[k]);
    size_t maps2 = map_count(), rss2 = vm_rss();
    printf("guarded churn: mappings %zu at start, %zu after %ld freed at once, at most %zu with "
           "%d live, %zu at the end; RSS %.1f, %.1f, at most %.1f (%.1f at 3M), %.1f MiB; "
           "%ld blocks seen guarded (%ld probed while the pool was full)\n",
           maps0, maps1, AT_ONCE, maps_max, LIVE, maps2, MIB(rss0), MIB(rss1), MIB(rss_max),
           MIB(rss_mid), MIB(rss2), guarded, probed);
    /* The pool adds at most two mappings per live guarded block (256 slots). */
    size_t map_limit = maps0 + 2 * 256 + 64;
    CHECKF(maps1 < map_limit && maps_max < map_limit && maps2 < map_limit,
           "mappings %zu/%zu/%zu, limit %zu", maps1, maps_max, maps2, map_limit);
    /* Freed guarded blocks are purged: RSS stays within a few MiB of the start. */
    CHECKF(rss1 < rss0 + (8u << 20), "RSS %.1f MiB after the at-once churn", MIB(rss1));
    /* Flat from 3 million blocks on (16384 live, about 40 MiB of them at most). */
    CHECKF(rss_max < rss_mid + (16u << 20), "RSS grew from %.1f to %.1f MiB", MIB(rss_mid),
           MIB(rss_max));
    CHECKF(guarded > AT_ONCE / 97 + 100, "only %ld guarded blocks seen", guarded);
    fflush(stdout);
    return 0;
}
