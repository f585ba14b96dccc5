// expect: realloc(): invalid pointer (not allocated by pagebreak)
// pointer: exact
/* realloc() of a stack address. */
#include "misuse.h"

int main(void) {
    char buf[64];
    memset(buf, 1, sizeof buf);
    void *p = hide(buf);
    show(p);
    void *r = realloc(p, 128);
    (void)r;
    return survived();
}
