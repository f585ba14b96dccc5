// expect: heap-buffer-overflow write at
// pointer: exact
// env: PAGEBREAK_GUARDED=1
// rest: : 2 bytes after the 30-byte block at {block}
// stacks: faulting instruction | allocated at
/* One byte past the usable size of a guarded block (30 bytes asked, 32 usable): the usable
   size reaches the guard page, so the write faults. */
#include "misuse.h"
#include "guarded.h"

int main(void) {
    char *p = malloc(30);
    CHECK(p != NULL);
    size_t usable = malloc_usable_size(p);
    CHECK(usable == 32);
    CHECK(guarded_right(p));
    memset(p, 1, usable); /* the whole usable size is fine */
    show(p);
    show(p + usable);
    ((volatile char *)hide(p))[usable] = 2;
    return survived();
}
