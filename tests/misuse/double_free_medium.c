// expect: free(): double free of
// pointer: exact
/* A medium block (40 KiB) freed twice in a row. */
#include "misuse.h"

int main(void) {
    void *p = malloc(40u << 10);
    CHECK(p != NULL);
    memset(p, 1, 40u << 10);
    free(p);
    show(p);
    free(hide(p));
    return survived();
}
