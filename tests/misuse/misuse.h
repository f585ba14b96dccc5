/* Shared by the deliberate-misuse programs. Each program does exactly one misuse and must
   die by SIGABRT with one `pagebreak: ` line on stderr. Its first lines say what xtask
   (xtask/src/misuse.rs) expects:
     // expect: <the report, up to the pointer>
     // pointer: exact | near      (near: the reported pointer is in the same 4 MiB segment)
   The program prints the pointer it is about to misuse with `show` just before. */
#ifndef PAGEBREAK_MISUSE_H
#define PAGEBREAK_MISUSE_H

#include "common.h"

/* Hides a pointer from the compiler, so it neither warns about nor folds away the misuse. */
static inline void *hide(void *p) {
    __asm__ volatile("" : "+r"(p));
    return p;
}

/* Prints the pointer the next call misuses, as `%p`, and flushes before dying. */
static inline void show(const void *p) {
    printf("%p\n", p);
    fflush(stdout);
}

/* Reached only when the misuse went undetected: exit non-zero (not an abort). */
static inline int survived(void) {
    fprintf(stderr, "misuse was not detected\n");
    return 3;
}

/* Blocks of assorted classes, none of 24 B, 40 KiB, 300 KiB or 3 MiB (the misused sizes), so
   the misused block is not handed out again in between. */
static inline void churn(void) {
    static const size_t sizes[] = {200, 1000, 5000, 20000, 100000, 600000, 5u << 20};
    void *keep[64];
    for (int round = 0; round < 4; round++) {
        int n = 0;
        for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
            for (int k = 0; k < 8; k++) {
                keep[n] = malloc(sizes[i]);
                CHECK(keep[n] != NULL);
                memset(keep[n], 0x5a, 64);
                n++;
            }
        }
        for (int i = 0; i < n; i += 2) free(keep[i]);
        for (int i = 1; i < n; i += 2) free(keep[i]);
    }
}

#endif
