/* Shared helpers for the C API tests: CHECK, pagebreak detection, patterns. */
#ifndef PAGEBREAK_TEST_COMMON_H
#define PAGEBREAK_TEST_COMMON_H

#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Fails the test with file:line and the expression. */
#define CHECK(e)                                                              \
    do {                                                                      \
        if (!(e)) {                                                           \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__,  \
                    #e);                                                      \
            exit(1);                                                          \
        }                                                                     \
    } while (0)

/* Like CHECK, with a formatted detail (sizes, pointers). */
#define CHECKF(e, ...)                                                        \
    do {                                                                      \
        if (!(e)) {                                                           \
            fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__,  \
                    #e);                                                      \
            fprintf(stderr, __VA_ARGS__);                                     \
            fputc('\n', stderr);                                              \
            exit(1);                                                          \
        }                                                                     \
    } while (0)

/* Hides a constant from the compiler, which would otherwise warn about (or reason
   from) allocation sizes it knows to be impossible. */
static inline size_t opaque(size_t x) {
    __asm__ volatile("" : "+r"(x));
    return x;
}

/* True when running with libpagebreak preloaded: pagebreak-only checks. */
static inline int is_pagebreak(void) {
    const char *p = getenv("LD_PRELOAD");
    return p && strstr(p, "pagebreak") != NULL;
}

static inline int aligned_to(const void *p, size_t a) {
    return ((uintptr_t)p & (a - 1)) == 0;
}

/* A byte pattern that depends on the block's seed and the offset. */
static inline unsigned char pat(uint32_t seed, size_t i) {
    return (unsigned char)(seed * 131u + (uint32_t)i * 7u + (uint32_t)(i >> 8));
}

static inline void fill(void *p, size_t n, uint32_t seed) {
    unsigned char *b = p;
    for (size_t i = 0; i < n; i++) b[i] = pat(seed, i);
}

/* Index of the first byte that does not match the pattern, or n. */
static inline size_t verify(const void *p, size_t n, uint32_t seed) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i] != pat(seed, i)) return i;
    return n;
}

/* Index of the first nonzero byte, or n. */
static inline size_t first_nonzero(const void *p, size_t n) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i]) return i;
    return n;
}

/* Deterministic pseudo-random numbers (xorshift64). */
static inline uint64_t rnd(uint64_t *s) {
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

/* A size spread over several orders of magnitude: mostly small, some large. */
static inline size_t rnd_size(uint64_t *s) {
    uint64_t r = rnd(s);
    switch (r % 16) {
    case 0: return (r >> 8) % (1u << 20) + 1;          /* up to 1 MiB */
    case 1: case 2: return (r >> 8) % 65536 + 1;       /* up to 64 KiB */
    case 3: case 4: case 5: return (r >> 8) % 4096 + 1;
    default: return (r >> 8) % 512 + 1;
    }
}

/* The functions glibc < 2.39 lacks, looked up at run time (NULL if absent). */
typedef void (*free_sized_fn)(void *, size_t);
typedef void (*free_aligned_sized_fn)(void *, size_t, size_t);

static inline free_sized_fn get_free_sized(void) {
    return (free_sized_fn)dlsym(RTLD_DEFAULT, "free_sized");
}

static inline free_aligned_sized_fn get_free_aligned_sized(void) {
    return (free_aligned_sized_fn)dlsym(RTLD_DEFAULT, "free_aligned_sized");
}

#endif
