// expect: use-after-free write at
// pointer: exact
// env: PAGEBREAK_GUARDED=1
// rest: : 16 bytes into the freed 24-byte block at {block}
// stacks: faulting instruction | allocated at | freed at
/* A guarded block written after it was freed, with other guarded blocks allocated and freed
   in between (the freed one stays in the quarantine). */
#include "misuse.h"
#include "guarded.h"

int main(void) {
    char *p = malloc(24);
    CHECK(p != NULL);
    CHECK(guarded_right(p));
    show(p);
    free(p);
    for (int i = 0; i < 100; i++) {
        char *q = malloc(24);
        CHECK(q != NULL && q != p);
        q[0] = 1;
        free(q);
    }
    show(p + 16);
    ((volatile char *)hide(p))[16] = 2;
    return survived();
}
