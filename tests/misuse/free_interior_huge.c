// expect: free(): invalid pointer (not allocated by pagebreak)
// pointer: exact
/* free() of p + 4096, p a live 3 MiB block (its own mapping). */
#include "misuse.h"

int main(void) {
    char *p = malloc(3u << 20);
    CHECK(p != NULL);
    void *q = hide(p + 4096);
    show(q);
    free(q);
    return survived();
}
