// expect: free(): invalid pointer (not allocated by pagebreak)
// pointer: exact
/* free() of a global. */
#include "misuse.h"

static char global[64];

int main(void) {
    void *p = hide(global);
    show(p);
    free(p);
    return survived();
}
