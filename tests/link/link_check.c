/* Linked with pagebreak instead of preloading it: `static` (libpagebreak.a) expects
   malloc in the executable itself, `dynamic` (-lpagebreak) in libpagebreak.so.
   Then a little of everything, to show the linked allocator works.

   usage: link_check static|dynamic */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CHECK(e)                                                                      \
    do {                                                                              \
        if (!(e)) {                                                                   \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #e);     \
            exit(1);                                                                  \
        }                                                                             \
    } while (0)

static const char *where(const char *name) {
    void *sym = dlsym(RTLD_DEFAULT, name);
    Dl_info info;
    if (!sym || !dladdr(sym, &info) || !info.dli_fname) return "<not found>";
    return info.dli_fname;
}

int main(int argc, char **argv) {
    CHECK(argc == 2);
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    CHECK(n > 0);
    exe[n] = 0;
    const char *fns[] = {"malloc", "free", "calloc", "realloc", "posix_memalign",
                         "aligned_alloc", "malloc_usable_size"};
    for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
        const char *lib = where(fns[i]);
        int ok = strcmp(argv[1], "static") == 0 ? strcmp(lib, exe) == 0
                                                : strstr(lib, "libpagebreak.so") != NULL;
        if (!ok) {
            fprintf(stderr, "%s comes from %s (linked %s)\n", fns[i], lib, argv[1]);
            return 1;
        }
    }
    void *blocks[1000];
    for (int i = 0; i < 1000; i++) {
        size_t sz = (size_t)(i * 37 % 5000) + 1;
        blocks[i] = malloc(sz);
        CHECK(blocks[i] != NULL && ((uintptr_t)blocks[i] & 15) == 0);
        memset(blocks[i], i & 0xff, sz);
        CHECK(malloc_usable_size(blocks[i]) >= sz);
    }
    for (int i = 0; i < 1000; i++) {
        CHECK(((unsigned char *)blocks[i])[0] == (i & 0xff));
        blocks[i] = realloc(blocks[i], 10000);
        CHECK(blocks[i] != NULL && ((unsigned char *)blocks[i])[0] == (i & 0xff));
        free(blocks[i]);
    }
    unsigned char *z = calloc(1000, 1000);
    CHECK(z != NULL);
    for (int i = 0; i < 1000000; i++) CHECK(z[i] == 0);
    free(z);
    void *a = NULL;
    CHECK(posix_memalign(&a, 1 << 16, 100) == 0 && ((uintptr_t)a & 0xffff) == 0);
    free(a);
    /* stdio and strdup allocate inside libc: those blocks come from pagebreak too. */
    char *d = strdup("pagebreak");
    CHECK(d != NULL && strcmp(d, "pagebreak") == 0);
    free(d);
    printf("linked %s: ok\n", argv[1]);
    return 0;
}
