// expect: free(): double free of
// pointer: exact
/* A small block (24 bytes) allocated by the main thread, freed by another thread (a remote free),
   then freed again by the main thread. */
#include "misuse.h"
#include <pthread.h>

static void *free_it(void *p) {
    free(p);
    return NULL;
}

int main(void) {
    void *p = malloc(24);
    CHECK(p != NULL);
    void *q = malloc(24); /* keeps the page in use */
    CHECK(q != NULL);
    pthread_t t;
    CHECK(pthread_create(&t, NULL, free_it, p) == 0);
    CHECK(pthread_join(t, NULL) == 0);
    show(p);
    free(hide(p));
    return survived();
}
