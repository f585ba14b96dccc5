// expect: malloc(): free list corrupted (use after free?) near
// pointer: near
/* A use-after-free write over the first word (the encoded free-list link) of a freed block,
   then mallocs of its size: the allocator must refuse to follow the forged link. */
#include "misuse.h"

int main(void) {
    char *a = malloc(512);
    char *b = malloc(512);
    CHECK(a != NULL && b != NULL);
    free(a);
    free(b);
    show(b);
    /* The write through the dangling pointer. */
    *(volatile uint64_t *)hide(b) = 0x4141414141414141ull;
    for (int i = 0; i < 200; i++) {
        void *q = malloc(512);
        CHECK(q != NULL);
        memset(q, 0, 16);
    }
    return survived();
}
