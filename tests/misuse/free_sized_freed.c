// expect: free(): double free of
// pointer: exact
/* free_sized() (C23) of a block already freed with free(). */
#include "misuse.h"

int main(void) {
    free_sized_fn free_sized = get_free_sized(); /* glibc < 2.39 lacks it */
    CHECK(free_sized != NULL);
    void *p = malloc(100);
    CHECK(p != NULL);
    free(p);
    show(p);
    free_sized(hide(p), 100);
    return survived();
}
