// expect: use-after-free read at
// pointer: exact
// env: PAGEBREAK_GUARDED=1
// rest: : 0 bytes into the freed 64-byte block at {block}
// stacks: faulting instruction | allocated at | freed at
/* fork() while another thread allocates and frees guarded blocks: each child finds the pool
   usable (its lock was taken around the fork), frees guarded blocks the parent allocated,
   allocates new ones, and exits 0. A child's use after free dies with the report (SIGABRT),
   and so does the parent's at the end. */
#include "misuse.h"
#include "guarded.h"
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>

#define FORKS 40

static volatile int stop;

static void *churn_guarded(void *arg) {
    (void)arg;
    while (!stop) {
        char *q = malloc(128);
        CHECK(q != NULL);
        memset(q, 3, 128);
        free(q);
    }
    return NULL;
}

static void child_work(char *inherited) {
    CHECK(inherited[10] == 7);
    free(inherited);
    for (int i = 0; i < 50; i++) {
        char *q = malloc(300);
        CHECK(q != NULL && guarded_right(q));
        fill(q, 300, i);
        CHECK(verify(q, 300, i) == 300);
        free(q);
    }
}

int main(void) {
    pthread_t t;
    CHECK(pthread_create(&t, NULL, churn_guarded, NULL) == 0);
    for (int i = 0; i < FORKS; i++) {
        char *mine = malloc(64);
        CHECK(mine != NULL && guarded_right(mine));
        memset(mine, 7, 64);
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) {
            child_work(mine);
            _exit(0);
        }
        int status;
        CHECK(waitpid(pid, &status, 0) == pid);
        CHECKF(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child %d: status %#x", i, status);
        free(mine);
    }
    stop = 1;
    CHECK(pthread_join(t, NULL) == 0);

    /* A child's use after free: the child dies by SIGABRT (its report goes to /dev/null). */
    char *p = malloc(64);
    CHECK(p != NULL && guarded_right(p));
    free(p);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        int null = open("/dev/null", O_WRONLY);
        CHECK(null >= 0 && dup2(null, 2) == 2);
        volatile char c = ((volatile char *)hide(p))[0];
        (void)c;
        _exit(0);
    }
    int status;
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECKF(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT, "child status %#x", status);

    show(p);
    show(p);
    volatile char c = ((volatile char *)hide(p))[0];
    (void)c;
    return survived();
}
