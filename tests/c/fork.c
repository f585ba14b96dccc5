/* fork() in a multi-threaded process while other threads allocate: every child
   must be able to malloc and free (no allocator lock left held across fork). */
#include "common.h"
#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>

#define BUSY 3
#define FORKS 200

static volatile int stop;

static void *busy(void *arg) {
    uint64_t s = (uint64_t)(intptr_t)arg * 12345 + 1;
    void *keep[64] = {0};
    while (!stop) {
        int i = (int)(rnd(&s) % 64);
        free(keep[i]);
        size_t n = rnd_size(&s);
        keep[i] = rnd(&s) % 4 ? malloc(n) : memalign(4096, n);
        CHECK(keep[i] != NULL);
        memset(keep[i], 0x33, n < 256 ? n : 256);
    }
    for (int i = 0; i < 64; i++) free(keep[i]);
    return NULL;
}

static void child(int k) {
    alarm(20); /* a deadlocked child dies with SIGALRM instead of hanging the test */
    uint64_t s = (uint64_t)k + 1;
    void *p[100];
    for (int i = 0; i < 100; i++) {
        size_t n = rnd_size(&s) % 16384 + 1;
        p[i] = malloc(n);
        if (!p[i]) _exit(2);
        fill(p[i], n, (uint32_t)i);
        if (verify(p[i], n, (uint32_t)i) != n) _exit(3);
    }
    for (int i = 0; i < 100; i++) free(p[i]);
    void *big = calloc(1, 1u << 20);
    if (!big || first_nonzero(big, 1u << 20) != 1u << 20) _exit(4);
    free(big);
    /* Half the children leave through exit(), which runs libc's cleanup (and its frees). */
    if (k % 2) exit(0);
    _exit(0);
}

int main(void) {
    pthread_t t[BUSY];
    for (int i = 0; i < BUSY; i++)
        CHECK(pthread_create(&t[i], NULL, busy, (void *)(intptr_t)i) == 0);
    fflush(stdout);
    fflush(stderr);
    int failed = 0;
    for (int k = 0; k < FORKS; k++) {
        void *mine = malloc((size_t)k * 100 + 1); /* the parent allocates between forks */
        CHECK(mine != NULL);
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) child(k);
        free(mine);
        int status = 0;
        CHECK(waitpid(pid, &status, 0) == pid);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            if (WIFSIGNALED(status))
                fprintf(stderr, "child %d: killed by signal %d%s\n", k, WTERMSIG(status),
                        WTERMSIG(status) == SIGALRM ? " (deadlocked)" : "");
            else
                fprintf(stderr, "child %d: exit status %d\n", k, WEXITSTATUS(status));
            failed++;
        }
    }
    stop = 1;
    for (int i = 0; i < BUSY; i++) CHECK(pthread_join(t[i], NULL) == 0);
    CHECKF(failed == 0, "%d of %d children failed", failed, FORKS);
    return 0;
}
