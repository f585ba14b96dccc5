// expect: heap-buffer-underflow read at
// pointer: exact
// env: PAGEBREAK_GUARDED=1 PAGEBREAK_GUARDED_LEFT=1
// rest: : 1 byte before the 40-byte block at {block}
// stacks: faulting instruction | allocated at
/* Left-aligned mode: a guarded block starts right after a guard page, so reading the byte
   before it faults. */
#include "misuse.h"
#include "guarded.h"

int main(void) {
    char *p = malloc(40);
    CHECK(p != NULL);
    CHECK(guarded_left(p));
    memset(p, 1, 40);
    show(p);
    show(p - 1);
    volatile char c = ((volatile char *)hide(p))[-1];
    (void)c;
    return survived();
}
