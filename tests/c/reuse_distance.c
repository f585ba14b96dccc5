/* How soon a freed block is handed out again: K, the number of same-size allocations a
   program can make between two frees of one block with the second free still reported as a
   double free (the block's canary survives until the block is handed out again).

   Each scenario runs on a fresh thread (a fresh heap, so the numbers do not depend on what
   ran before): it allocates blocks of 24 bytes, frees one of them (on the same thread, or on
   another thread for the cross-thread scenarios), then allocates 24-byte blocks, keeping them
   all, until the freed block comes back. K is the number of allocations before that one.

     reuse_distance            print K per scenario, check it against the README's numbers
     reuse_distance --print    print only (any allocator)

   Scenarios:
     fresh    100 blocks allocated, block 50 freed: a page in its first use
     full     20000 blocks allocated (several pages used up), block 50 freed
     worst    2048 blocks allocated: pagebreak's 64 KiB page of 32-byte blocks used up, so
              the freed block is the only free one in the heap
   each with the free on the same thread ("local") and on another thread ("remote"). */
#include "common.h"
#include <pthread.h>

enum { SIZE = 24, CAP = 1 << 20 };

struct scenario {
    const char *name;
    int before; /* blocks allocated before the free */
    int remote; /* the free happens on another thread */
    long min_k; /* what the README promises in this scenario; -1: printed only */
    long k;     /* measured */
};

static void *free_it(void *p) {
    free(p);
    return NULL;
}

static void *measure(void *arg) {
    struct scenario *s = arg;
    void **blocks = malloc(sizeof(void *) * (size_t)(s->before + CAP));
    CHECK(blocks != NULL);
    for (int i = 0; i < s->before; i++) {
        blocks[i] = malloc(SIZE);
        CHECK(blocks[i] != NULL);
    }
    void *victim = blocks[50];
    if (s->remote) {
        pthread_t t;
        CHECK(pthread_create(&t, NULL, free_it, victim) == 0);
        CHECK(pthread_join(t, NULL) == 0);
    } else {
        free(victim);
    }
    long k = 0;
    for (; k < CAP; k++) {
        void *q = malloc(SIZE);
        CHECK(q != NULL);
        blocks[s->before + k] = q;
        if (q == victim) break;
    }
    s->k = k;
    /* blocks[50] was freed; the block that came back (if it did) is the last one kept. */
    for (long i = 0; i < s->before + k + (k < CAP); i++)
        if (i != 50) free(blocks[i]);
    free(blocks);
    return NULL;
}

int main(int argc, char **argv) {
    int print_only = argc > 1 && strcmp(argv[1], "--print") == 0;
    struct scenario scenarios[] = {
        {"fresh, local", 100, 0, 28, 0},
        {"fresh, remote", 100, 1, 28, 0},
        {"full, local", 20000, 0, 2048, 0},
        {"full, remote", 20000, 1, 2048, 0},
        {"worst, local", 2048, 0, 2048, 0},
        {"worst, remote", 2048, 1, 2048, 0},
    };
    int failed = 0;
    for (size_t i = 0; i < sizeof scenarios / sizeof scenarios[0]; i++) {
        struct scenario *s = &scenarios[i];
        pthread_t t;
        CHECK(pthread_create(&t, NULL, measure, s) == 0);
        CHECK(pthread_join(t, NULL) == 0);
        printf("K %-14s %ld%s\n", s->name, s->k, s->k >= CAP ? " (or more)" : "");
        if (!print_only && s->k < s->min_k) {
            fprintf(stderr, "reuse_distance: %s: K = %ld, README promises at least %ld\n",
                    s->name, s->k, s->min_k);
            failed = 1;
        }
    }
    return failed;
}
