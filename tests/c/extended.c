/* The extended API of pagebreak.h (looked up with dlsym, so the test also runs, and skips,
   under glibc), and mallinfo2 reporting pagebreak's own counters. */
#include "common.h"
#include "../../alloc-ffi/include/pagebreak.h"

#define LOOKUP(name) typeof(&name) p_##name = (typeof(&name))dlsym(RTLD_DEFAULT, #name)

int main(void) {
    if (!is_pagebreak()) {
        puts("extended API: skipped (pagebreak not preloaded)");
        return 0;
    }
    LOOKUP(pagebreak_stats_get);
    LOOKUP(pagebreak_heap_new);
    LOOKUP(pagebreak_heap_destroy);
    LOOKUP(pagebreak_heap_malloc);
    LOOKUP(pagebreak_heap_calloc);
    LOOKUP(pagebreak_heap_aligned_alloc);
    LOOKUP(pagebreak_heap_realloc);
    LOOKUP(pagebreak_heap_free);
    LOOKUP(pagebreak_heapmap_write);
    LOOKUP(pagebreak_version);
    LOOKUP(pagebreak_profile_dump);
    CHECK(p_pagebreak_stats_get && p_pagebreak_heap_new && p_pagebreak_heap_destroy);
    CHECK(p_pagebreak_heap_malloc && p_pagebreak_heap_calloc && p_pagebreak_heap_free);
    CHECK(p_pagebreak_heap_aligned_alloc && p_pagebreak_heap_realloc);
    CHECK(p_pagebreak_heapmap_write && p_pagebreak_version && p_pagebreak_profile_dump);
    /* Profiling is off unless PAGEBREAK_PROFILE is set: no dump, EINVAL. */
    errno = 0;
    CHECK(p_pagebreak_profile_dump("/tmp/pagebreak-never-written.prof") == -1 && errno == EINVAL);
    CHECK(strcmp(p_pagebreak_version(), "0.0.0") > 0);

    /* Statistics follow allocations. */
    struct pagebreak_stats before, during, after;
    CHECK(p_pagebreak_stats_get(&before) == 0);
    enum { N = 20000 };
    static void *blocks[N];
    for (int i = 0; i < N; i++) blocks[i] = malloc(100);
    void *huge = malloc(8 << 20);
    CHECK(huge);
    free(malloc(1)); /* a slow path refreshes the counters */
    CHECK(p_pagebreak_stats_get(&during) == 0);
    CHECKF(during.allocated >= before.allocated + (size_t)N * 100, "allocated %zu -> %zu",
           before.allocated, during.allocated);
    CHECK(during.huge_count == before.huge_count + 1);
    CHECK(during.huge_bytes >= before.huge_bytes + (8 << 20));
    CHECK(during.reserved >= during.allocated);
    size_t c112 = 0;
    for (int c = 0; c < PAGEBREAK_CLASSES; c++)
        if (during.class_size[c] == 112) c112 = during.class_live[c];
    CHECKF(c112 >= N - 64, "class 112 live %zu", c112);
    struct mallinfo2 mi = mallinfo2();
    CHECK(mi.hblks == during.huge_count);
    CHECK(mi.uordblks >= (size_t)N * 100);

    /* A picture of the heap. */
    char path[] = "/tmp/pagebreak-heapmap-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    close(fd);
    CHECK(p_pagebreak_heapmap_write(path) == 0);
    FILE *f = fopen(path, "r");
    CHECK(f);
    char line[64];
    CHECK(fgets(line, sizeof line, f));
    CHECK(strncmp(line, "pagebreak-heapmap 1 ", 20) == 0);
    int segments = 0, c;
    while ((c = fgetc(f)) != EOF) segments += c == '\n';
    fclose(f);
    unlink(path);
    CHECKF(segments >= 1, "%d segment lines", segments);

    for (int i = 0; i < N; i++) free(blocks[i]);
    free(huge);
    free(malloc(1));
    CHECK(p_pagebreak_stats_get(&after) == 0);
    CHECK(after.huge_count == before.huge_count);

    /* Arena heaps: everything goes at once. */
    for (int round = 0; round < 5; round++) {
        pagebreak_heap *h = p_pagebreak_heap_new();
        CHECK(h);
        for (int i = 0; i < 5000; i++) {
            char *p = p_pagebreak_heap_malloc(h, 1 + i % 3000);
            CHECK(p);
            memset(p, i, 1 + i % 3000);
            if (i % 3 == 0) p_pagebreak_heap_free(h, p);
            if (i % 5 == 0) free(p_pagebreak_heap_malloc(h, 64)); /* plain free works too */
        }
        int *z = p_pagebreak_heap_calloc(h, 1000, sizeof(int));
        CHECK(z && z[0] == 0 && z[999] == 0);
        char *a = p_pagebreak_heap_aligned_alloc(h, 4096, 100);
        CHECK(a && aligned_to(a, 4096));
        char *r = p_pagebreak_heap_realloc(h, p_pagebreak_heap_malloc(h, 10), 5 << 20);
        CHECK(r);
        r[(5 << 20) - 1] = 1;
        errno = 0;
        CHECK(p_pagebreak_heap_aligned_alloc(h, 24, 10) == NULL && errno == EINVAL);
        CHECK(p_pagebreak_heap_calloc(h, SIZE_MAX / 2, 4) == NULL && errno == ENOMEM);
        p_pagebreak_heap_destroy(h);
    }
    struct pagebreak_stats end;
    free(malloc(1));
    CHECK(p_pagebreak_stats_get(&end) == 0);
    CHECKF(end.allocated <= after.allocated + (1 << 20), "arenas left %zu bytes", end.allocated - after.allocated);
    CHECK(end.huge_count == after.huge_count);
    puts("extended API: ok");
    return 0;
}
