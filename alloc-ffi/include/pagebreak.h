/* pagebreak: the extended C API (statistics, heaps, heap pictures).
 *
 * The standard allocation functions (malloc, free, calloc, realloc, posix_memalign, ...)
 * come from <stdlib.h> and <malloc.h> as usual; this header adds what glibc has no name for.
 * Link with -lpagebreak (pkg-config --libs pagebreak), or preload libpagebreak.so and look the
 * symbols up with dlsym.
 */
#ifndef PAGEBREAK_H
#define PAGEBREAK_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PAGEBREAK_CLASSES 61

/* A snapshot of the allocator's counters. Small-block counts are exact as of each page's last
 * slow-path event (the fast paths count nothing). */
struct pagebreak_stats {
    size_t allocated;          /* bytes in live blocks */
    size_t reserved;           /* bytes obtained from the OS and not returned */
    size_t peak_reserved;      /* highest `reserved` seen */
    size_t segments;           /* 4 MiB page segments in use */
    size_t purges;             /* purge operations (each one madvise) */
    size_t purged_bytes;       /* bytes purged in total */
    size_t remote_frees;       /* blocks freed by a thread other than their owner */
    size_t huge_count;         /* live blocks over 1 MiB (a mapping each) */
    size_t huge_bytes;         /* bytes requested in them */
    size_t heaps;              /* live heaps (threads and pagebreak_heap's) */
    size_t abandoned_segments; /* segments of exited threads not yet adopted */
    size_t cached_resident;    /* bytes of freed spans kept resident for reuse */
    size_t class_size[PAGEBREAK_CLASSES]; /* block size of each size class (0: unused) */
    size_t class_live[PAGEBREAK_CLASSES]; /* live blocks of each size class */
};

/* Fill *out; returns 0. */
int pagebreak_stats_get(struct pagebreak_stats *out);

/* Print the statistics table to stderr (the same as malloc_stats()). */
void pagebreak_stats_print(void);

/* A first-class heap (an arena): allocate from it on one thread at a time; its blocks may be
 * freed one by one with free() from any thread, or all at once by pagebreak_heap_destroy. */
typedef struct pagebreak_heap pagebreak_heap;

pagebreak_heap *pagebreak_heap_new(void);
/* Free every block of the heap at once. No block of it may be used afterwards. */
void pagebreak_heap_destroy(pagebreak_heap *heap);
void *pagebreak_heap_malloc(pagebreak_heap *heap, size_t size);
void *pagebreak_heap_calloc(pagebreak_heap *heap, size_t count, size_t size);
void *pagebreak_heap_aligned_alloc(pagebreak_heap *heap, size_t align, size_t size);
void *pagebreak_heap_realloc(pagebreak_heap *heap, void *p, size_t size);
/* Free a block through its heap (plain free() works too, from any thread). */
void pagebreak_heap_free(pagebreak_heap *heap, void *p);

/* Write a picture of the heap's segments (text, rendered by `cargo xtask heapmap`) to path.
 * Returns 0, or -1 with errno set. */
int pagebreak_heapmap_write(const char *path);

/* Write a heap profile (the raw dump read by pagebreak-prof) to path; NULL: the path of
 * PAGEBREAK_PROFILE_PATH, or pagebreak-<pid>.prof. Profiling must be on (PAGEBREAK_PROFILE=1,
 * or a sampling interval in bytes). Returns 0, or -1 with errno set (EINVAL: profiling off). */
int pagebreak_profile_dump(const char *path);

/* The library's version, e.g. "0.1.0". */
const char *pagebreak_version(void);

#ifdef __cplusplus
}
#endif

#endif /* PAGEBREAK_H */
