/* Shared by the guarded-sampling tests (tests/misuse/guarded_*.c, tests/limits/guarded_*.c):
   probes that tell whether a block sits against an inaccessible guard page, without touching
   it (a touch would fault): write(2) from an inaccessible address fails with EFAULT. */
#ifndef PAGEBREAK_GUARDED_H
#define PAGEBREAK_GUARDED_H

#include "common.h"
#include <pthread.h>

/* The probe pipe, made once for all threads. Made lazily by whichever thread came first, it
   raced: two threads could each make one, and one then wrote into the first pipe and blocked
   forever reading the second (guarded_threads hung 1 run in 10). A _Thread_local pipe fixed
   that but broke under qemu-aarch64 with 64 KiB pages and every allocation guarded (pipe()
   failed on the TLS array), so it is one pipe behind pthread_once. Each probe writes one byte
   and reads one back; which thread's byte it reads does not matter. */
static int probe_fds[2] = {-1, -1};
static pthread_once_t probe_once = PTHREAD_ONCE_INIT;
static void probe_pipe(void) { CHECK(pipe(probe_fds) == 0); }

/* Whether the byte at p can be read (by the kernel, on our behalf). */
static inline int readable(const void *p) {
    CHECK(pthread_once(&probe_once, probe_pipe) == 0);
    ssize_t n = write(probe_fds[1], p, 1);
    if (n == 1) {
        char c;
        CHECK(read(probe_fds[0], &c, 1) == 1);
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
