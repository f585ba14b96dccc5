// expect: free(): invalid pointer (not allocated by pagebreak)
// pointer: exact
/* free() of p + 1, p a live 64-byte block. */
#include "misuse.h"

int main(void) {
    char *p = malloc(64);
    CHECK(p != NULL);
    void *q = hide(p + 1);
    show(q);
    free(q);
    return survived();
}
