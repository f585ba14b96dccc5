// expect: free(): double free of
// pointer: exact
/* A small block (24 bytes) freed twice in a row. */
#include "misuse.h"

int main(void) {
    void *p = malloc(24);
    CHECK(p != NULL);
    memset(p, 1, 24);
    free(p);
    show(p);
    free(hide(p));
    return survived();
}
