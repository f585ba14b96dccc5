// expect: free(): double free of
// pointer: exact
/* A huge block (3 MiB) freed twice in a row. */
#include "misuse.h"

int main(void) {
    void *p = malloc(3u << 20);
    CHECK(p != NULL);
    memset(p, 1, 3u << 20);
    free(p);
    show(p);
    free(hide(p));
    return survived();
}
