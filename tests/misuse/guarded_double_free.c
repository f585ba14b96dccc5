// expect: free(): double free of
// pointer: exact
// env: PAGEBREAK_GUARDED=1
// stacks: allocated at | freed at
/* A guarded block freed twice: today's report, plus where it was allocated and freed. */
#include "misuse.h"
#include "guarded.h"

int main(void) {
    char *p = malloc(100);
    CHECK(p != NULL);
    CHECK(guarded_right(p));
    free(p);
    show(p);
    free(hide(p));
    return survived();
}
