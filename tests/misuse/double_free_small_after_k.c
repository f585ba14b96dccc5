// expect: free(): double free of
// pointer: exact
/* A small block (24 bytes) freed, then K = 28 more blocks of its size allocated (the reuse
   distance README "What pagebreak detects" promises for a page in its first use; see
   tests/c/reuse_distance.c), then freed again. On a fresh thread, so the page is fresh. */
#include "misuse.h"
#include <pthread.h>

static void *run(void *arg) {
    (void)arg;
    void *blocks[100 + 28];
    for (int i = 0; i < 100; i++) {
        blocks[i] = malloc(24);
        CHECK(blocks[i] != NULL);
    }
    void *p = blocks[50];
    free(p);
    for (int i = 100; i < 100 + 28; i++) {
        blocks[i] = malloc(24);
        CHECK(blocks[i] != NULL && blocks[i] != p);
    }
    show(p);
    free(hide(p));
    return NULL;
}

int main(void) {
    pthread_t t;
    CHECK(pthread_create(&t, NULL, run, NULL) == 0);
    CHECK(pthread_join(t, NULL) == 0);
    return survived();
}
