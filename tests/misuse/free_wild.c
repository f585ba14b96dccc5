// expect: free(): invalid pointer (not allocated by pagebreak)
// pointer: exact
/* free() of an address nothing is mapped at. */
#include "misuse.h"

int main(void) {
    void *keep = malloc(100); /* pagebreak is initialised and holds segments */
    CHECK(keep != NULL);
    void *p = hide((void *)0x12345678000);
    show(p);
    free(p);
    return survived();
}
