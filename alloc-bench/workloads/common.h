/* Shared helpers for the macro workloads: a deterministic PRNG, argument parsing, and the
 * block tagging that lets every workload check its data survived (an allocator that hands
 * out overlapping blocks is caught here, not just timed). */
#ifndef WORKLOAD_COMMON_H
#define WORKLOAD_COMMON_H
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* xorshift64*: fast, and the same sequence for every allocator. */
static inline uint64_t rng_next(uint64_t *s) {
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1DULL;
}

/* Uniform in [lo, hi]. */
static inline size_t rng_range(uint64_t *s, size_t lo, size_t hi) {
    return lo + (size_t)(rng_next(s) % (uint64_t)(hi - lo + 1));
}

static inline long arg_long(int argc, char **argv, int i, long dflt) {
    if (argc > i) {
        char *end;
        long v = strtol(argv[i], &end, 10);
        if (*end == 0 && v > 0) return v;
        fprintf(stderr, "%s: bad argument %s\n", argv[0], argv[i]);
        exit(2);
    }
    return dflt;
}

static inline int ncpus(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : (int)n;
}

static inline void *xmalloc(size_t n) {
    void *p = malloc(n);
    if (!p) {
        fprintf(stderr, "malloc(%zu) failed\n", n);
        abort();
    }
    return p;
}

/* Tags the first and last byte of a block with values derived from its size and a key. */
static inline void tag(unsigned char *p, size_t n, unsigned key) {
    p[0] = (unsigned char)(n ^ key);
    p[n - 1] = (unsigned char)((n >> 3) ^ key ^ 0x5a);
}

static inline void check(const unsigned char *p, size_t n, unsigned key, const char *what) {
    if (p[0] != (unsigned char)(n ^ key) || p[n - 1] != (unsigned char)((n >> 3) ^ key ^ 0x5a)) {
        fprintf(stderr, "%s: block %p of %zu bytes was corrupted\n", what, (const void *)p, n);
        abort();
    }
}
#endif
