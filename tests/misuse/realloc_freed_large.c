// expect: realloc(): pointer already freed:
// pointer: exact
/* realloc() of a freed large block. */
#include "misuse.h"

int main(void) {
    void *p = malloc(300u << 10);
    CHECK(p != NULL);
    void *keep = malloc(300u << 10); /* keeps the page or segment in use */
    CHECK(keep != NULL);
    free(p);
    show(p);
    void *r = realloc(hide(p), 2 * (300u << 10));
    (void)r;
    return survived();
}
