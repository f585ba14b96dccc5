// expect: use-after-free read at
// pointer: exact
// env: PAGEBREAK_GUARDED=1
// rest: : 8 bytes into the freed 24-byte block at {block}
// stacks: faulting instruction | allocated at | freed at
/* A guarded block (every allocation sampled) read after it was freed: the read faults and
   the report names the block and both stacks. */
#include "misuse.h"
#include "guarded.h"

int main(void) {
    char *p = malloc(24);
    CHECK(p != NULL);
    CHECK(guarded_right(p));
    memset(p, 1, 24);
    show(p);
    free(p);
    show(p + 8);
    volatile char c = ((volatile char *)hide(p))[8];
    (void)c;
    return survived();
}
