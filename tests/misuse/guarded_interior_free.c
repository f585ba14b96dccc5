// expect: free(): invalid pointer (not allocated by pagebreak)
// pointer: exact
// env: PAGEBREAK_GUARDED=1
// stacks: allocated at
/* A pointer into the middle of a live guarded block: an invalid free, reported with the
   block's allocation stack. */
#include "misuse.h"
#include "guarded.h"

int main(void) {
    char *p = malloc(64);
    CHECK(p != NULL);
    CHECK(guarded_right(p));
    show(p + 16);
    free(hide(p + 16));
    return survived();
}
