/* Fast-path workload for the instruction-count golden test: N malloc(32)/free pairs on the
   owning thread, with one block kept alive so the page never goes empty (that is the cold
   retire path, not the fast path). Run with two values of N; the difference divided by the
   difference in N is the exact cost of one malloc and one free. */
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 1000;
    void *keep = malloc(32);
    for (long i = 0; i < 64; i++) free(malloc(32)); /* warm: page set up, list primed */
    for (long i = 0; i < n; i++) {
        void *volatile p = malloc(32);
        free(p);
    }
    free(keep);
    return 0;
}
