// expect: malloc_usable_size(): invalid pointer (not allocated by pagebreak)
// pointer: exact
/* malloc_usable_size() of a stack address. */
#include "misuse.h"

int main(void) {
    char buf[64];
    memset(buf, 1, sizeof buf);
    void *p = hide(buf);
    show(p);
    size_t n = malloc_usable_size(p);
    printf("%zu\n", n);
    return survived();
}
