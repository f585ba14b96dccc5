// expect: realloc(): pointer already freed:
// pointer: exact
/* realloc(p, 0) (which frees) of a freed block. */
#include "misuse.h"

int main(void) {
    void *p = malloc(100);
    CHECK(p != NULL);
    free(p);
    show(p);
    void *r = realloc(hide(p), 0);
    (void)r;
    return survived();
}
