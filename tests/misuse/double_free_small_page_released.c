// expect: free(): double free of
// pointer: exact
/* A small block freed along with 100000 others of its size, so that its page holds no live block
   and goes back to its segment, then freed again. (Nothing is allocated in between: the block
   is not handed out again.) */
#include "misuse.h"

static void *blocks[100000];

int main(void) {
    printf("start\n"); /* stdio's buffer is allocated now, not after the frees */
    for (int i = 0; i < 100000; i++) {
        blocks[i] = malloc(24);
        CHECK(blocks[i] != NULL);
    }
    void *p = blocks[0];
    for (int i = 0; i < 100000; i++) free(blocks[i]);
    show(p);
    free(hide(p));
    return survived();
}
