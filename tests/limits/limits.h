/* Shared by the limits tests: /proc readers. */
#ifndef PAGEBREAK_LIMITS_H
#define PAGEBREAK_LIMITS_H

#include "common.h"
#include <time.h>

/* A `Name: N kB` field of /proc/self/status, in bytes. */
static inline size_t status_kb(const char *field) {
    FILE *f = fopen("/proc/self/status", "r");
    CHECK(f != NULL);
    char line[256];
    size_t n = strlen(field), kb = 0;
    int found = 0;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, field, n) == 0 && line[n] == ':') {
            found = sscanf(line + n + 1, " %zu kB", &kb) == 1;
            break;
        }
    fclose(f);
    CHECKF(found, "no %s in /proc/self/status", field);
    return kb * 1024;
}

static inline size_t vm_rss(void) { return status_kb("VmRSS"); }
static inline size_t vm_size(void) { return status_kb("VmSize"); }

#define MIB(x) ((double)(x) / (1 << 20))

static inline void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

#endif
