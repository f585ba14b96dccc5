// expect: free(): invalid pointer (not allocated by pagebreak)
// pointer: exact
/* free() of p + 64 KiB, p a live 300 KiB block (a slot run in a segment). */
#include "misuse.h"

int main(void) {
    char *p = malloc(300u << 10);
    CHECK(p != NULL);
    void *q = hide(p + 65536);
    show(q);
    free(q);
    return survived();
}
