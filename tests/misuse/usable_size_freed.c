// expect: malloc_usable_size(): pointer already freed:
// pointer: exact
/* malloc_usable_size() of a freed block. */
#include "misuse.h"

int main(void) {
    void *p = malloc(100);
    CHECK(p != NULL);
    free(p);
    show(p);
    size_t n = malloc_usable_size(hide(p));
    printf("%zu\n", n);
    return survived();
}
