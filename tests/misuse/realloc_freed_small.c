// expect: realloc(): pointer already freed:
// pointer: exact
/* realloc() of a freed small block. */
#include "misuse.h"

int main(void) {
    void *p = malloc(100);
    CHECK(p != NULL);
    void *keep = malloc(100); /* keeps the page or segment in use */
    CHECK(keep != NULL);
    free(p);
    show(p);
    void *r = realloc(hide(p), 2 * (100));
    (void)r;
    return survived();
}
