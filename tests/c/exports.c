/* Every C allocation entry point resolves to pagebreak when it is preloaded: a
   missing one would let glibc's version receive pagebreak's pointers. */
#include "common.h"

static const char *const api[] = {
    "malloc", "free", "calloc", "realloc", "reallocarray", "posix_memalign",
    "aligned_alloc", "memalign", "valloc", "pvalloc", "malloc_usable_size", "malloc_trim",
    "free_sized", "free_aligned_sized",
    /* glibc's own aliases, which some programs and libraries call directly. */
    "__libc_malloc", "__libc_free", "__libc_calloc", "__libc_realloc", "__libc_memalign",
    "__libc_valloc", "__libc_pvalloc",
};

typedef void *(*malloc_fn)(size_t);
typedef void (*free_fn)(void *);
typedef void *(*calloc_fn)(size_t, size_t);
typedef void *(*realloc_fn)(void *, size_t);
typedef void *(*memalign_fn)(size_t, size_t);

int main(void) {
    int pb = is_pagebreak();
    for (size_t i = 0; i < sizeof api / sizeof api[0]; i++) {
        void *sym = dlsym(RTLD_DEFAULT, api[i]);
        if (!pb) {
            /* glibc < 2.39 lacks the C23 pair; the rest must be there. */
            CHECKF(sym != NULL || strstr(api[i], "free_") == api[i], "%s not found", api[i]);
            continue;
        }
        CHECKF(sym != NULL, "%s is not exported", api[i]);
        Dl_info info;
        CHECKF(dladdr(sym, &info) != 0 && info.dli_fname != NULL, "dladdr(%s)", api[i]);
        CHECKF(strstr(info.dli_fname, "pagebreak") != NULL, "%s resolves to %s, not pagebreak",
               api[i], info.dli_fname);
    }

    /* The __libc_ aliases are interchangeable with the standard names. */
    malloc_fn lm = (malloc_fn)dlsym(RTLD_DEFAULT, "__libc_malloc");
    free_fn lf = (free_fn)dlsym(RTLD_DEFAULT, "__libc_free");
    calloc_fn lc = (calloc_fn)dlsym(RTLD_DEFAULT, "__libc_calloc");
    realloc_fn lr = (realloc_fn)dlsym(RTLD_DEFAULT, "__libc_realloc");
    memalign_fn lma = (memalign_fn)dlsym(RTLD_DEFAULT, "__libc_memalign");
    CHECK(lm && lf && lc && lr && lma);
    unsigned char *p = lm(100);
    CHECK(p != NULL);
    fill(p, 100, 1);
    p = realloc(p, 5000);
    CHECK(p != NULL && verify(p, 100, 1) == 100);
    lf(p);
    p = malloc(300);
    CHECK(p != NULL);
    fill(p, 300, 2);
    p = lr(p, 30000);
    CHECK(p != NULL && verify(p, 300, 2) == 300);
    free(p);
    p = lc(10, 10);
    CHECK(p != NULL && first_nonzero(p, 100) == 100);
    free(p);
    p = lma(4096, 10);
    CHECK(p != NULL && aligned_to(p, 4096));
    lf(p);
    return 0;
}
