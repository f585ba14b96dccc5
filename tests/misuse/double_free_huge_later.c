// expect: free(): double free of
// pointer: exact
/* A huge block (3 MiB) freed, then blocks of other sizes allocated and freed around it
   (its neighbours of the same size freed too), then freed again. */
#include "misuse.h"

int main(void) {
    void *same[8];
    for (int i = 0; i < 8; i++) {
        same[i] = malloc(3u << 20);
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
