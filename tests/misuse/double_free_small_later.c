// expect: free(): double free of
// pointer: exact
/* A small block (24 bytes) freed, then blocks of other sizes allocated and freed around it
   (its neighbours of the same size freed too), then freed again. */
#include "misuse.h"

int main(void) {
    void *same[8];
    for (int i = 0; i < 8; i++) {
        same[i] = malloc(24);
        CHECK(same[i] != NULL);
    }
    void *p = same[3];
    free(p);
    churn();
    for (int i = 0; i < 8; i++)
        if (i != 3) free(same[i]);
    churn();
    show(p);
    free(hide(p));
    return survived();
}
