/* Three call sites hold 60%, 30% and 10% of a 256 MiB live heap, in blocks of three size
 * classes (small, small page-sized, medium). Profiling is on (the xtask sets
 * PAGEBREAK_PROFILE=1): dump the profile with the blocks live, free them, dump again.
 * Prints each site's address; `cargo xtask test` attributes the samples with `nm -S`.
 *
 * usage: shares LIVE_DUMP FREED_DUMP */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOTAL (256u << 20)

static void **keep;
static size_t kept;

__attribute__((noinline)) static void site_a(size_t bytes) {
    for (size_t i = 0; i < bytes / 48; i++) {
        char *p = malloc(48);
        p[0] = 1;
        keep[kept++] = p;
    }
}

__attribute__((noinline)) static void site_b(size_t bytes) {
    for (size_t i = 0; i < bytes / 4096; i++) {
        char *p = malloc(4096);
        p[0] = 2;
        keep[kept++] = p;
    }
}

__attribute__((noinline)) static void site_c(size_t bytes) {
    for (size_t i = 0; i < bytes / 98304; i++) {
        char *p = malloc(98304);
        p[0] = 3;
        keep[kept++] = p;
    }
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: shares LIVE_DUMP FREED_DUMP\n");
        return 2;
    }
    int (*dump)(const char *) = (int (*)(const char *))dlsym(RTLD_DEFAULT, "pagebreak_profile_dump");
    if (!dump) {
        fprintf(stderr, "pagebreak_profile_dump not found (is libpagebreak preloaded?)\n");
        return 1;
    }
    keep = malloc(sizeof(void *) * (TOTAL / 48 + 1024));
    printf("site site_a %p\nsite site_b %p\nsite site_c %p\n", (void *)site_a, (void *)site_b,
           (void *)site_c);
    /* Interleaved rounds, so no site owns a phase of the run. */
    for (int round = 0; round < 16; round++) {
        site_a(TOTAL / 16 / 10 * 6);
        site_b(TOTAL / 16 / 10 * 3);
        site_c(TOTAL / 16 / 10 * 1);
    }
    if (dump(argv[1]) != 0) {
        perror("pagebreak_profile_dump");
        return 1;
    }
    for (size_t i = 0; i < kept; i++)
        free(keep[i]);
    if (dump(argv[2]) != 0) {
        perror("pagebreak_profile_dump");
        return 1;
    }
    free(keep);
    return 0;
}
