/* Shared by the guarded-sampling tests (tests/misuse/guarded_*.c, tests/limits/guarded_*.c):
   probes that tell whether a block sits against an inaccessible guard page, without touching
   it (a touch would fault): write(2) from an inaccessible address fails with EFAULT. */
#ifndef PAGEBREAK_GUARDED_H
#define PAGEBREAK_GUARDED_H

#include "common.h"

/* Whether the byte at p can be read (by the kernel, on our behalf). The pipe is per thread:
   a shared one raced when two threads created it at once (one thread wrote into the first pipe
   and then blocked forever reading the second: guarded_threads hung 1 run in 10). */
static inline int readable(const void *p) {
    static _Thread_local int fds[2] = {-1, -1};
    if (fds[0] < 0) CHECK(pipe(fds) == 0);
    ssize_t n = write(fds[1], p, 1);
    if (n == 1) {
        char c;
        CHECK(read(fds[0], &c, 1) == 1);
        return 1;
    }
    CHECKF(errno == EFAULT, "write from %p: %s", p, strerror(errno));
    return 0;
}

/* A right-aligned guarded block: its usable bytes are readable and the next byte is not. */
static inline int guarded_right(const void *p) {
    size_t usable = malloc_usable_size((void *)p);
    const char *b = p;
    return usable > 0 && readable(b) && readable(b + usable - 1) && !readable(b + usable);
}

/* A left-aligned guarded block: the byte before it is not readable. */
static inline int guarded_left(const void *p) {
    const char *b = p;
    return readable(b) && !readable(b - 1);
}

#endif
