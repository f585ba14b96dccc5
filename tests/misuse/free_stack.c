// expect: free(): invalid pointer (not allocated by pagebreak)
// pointer: exact
/* free() of a stack address. */
#include "misuse.h"

int main(void) {
    char buf[64];
    memset(buf, 1, sizeof buf);
    void *p = hide(buf);
    show(p);
    free(p);
    return survived();
}
