/* Profiling under concurrency: threads allocate and free (also each other's blocks) while
 * the main thread dumps the profile, raises the profile signal, or forks. Every dump must be
 * complete (end with "end"), and nothing may deadlock or crash. Mode oom: an allocation that
 * fails writes a dump (reason oom), which _exit keeps from being overwritten at exit.
 *
 * usage: stress threads|signal|fork|oom DIR */
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#define THREADS 4
#define SLOTS 4096

static _Atomic(void *) shared[SLOTS];
static atomic_int stop;

static void *worker(void *arg) {
    unsigned seed = (unsigned)(size_t)arg;
    while (!atomic_load(&stop)) {
        seed = seed * 1103515245u + 12345u;
        size_t size = 1 + (seed >> 8) % ((seed & 0x100) ? 200000 : 2000);
        char *p = malloc(size);
        if (!p) abort();
        memset(p, 0x5a, size < 64 ? size : 64);
        /* Swap into a shared slot: the block we get back was often made by another thread. */
        void *old = atomic_exchange(&shared[(seed >> 12) % SLOTS], p);
        free(old);
    }
    return NULL;
}

static int (*dump)(const char *);

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: stress threads|signal|fork DIR\n");
        return 2;
    }
    dump = (int (*)(const char *))dlsym(RTLD_DEFAULT, "pagebreak_profile_dump");
    if (!dump) {
        fprintf(stderr, "pagebreak_profile_dump not found\n");
        return 1;
    }
    const char *mode = argv[1], *dir = argv[2];
    if (!strcmp(mode, "oom")) {
        void *keep = malloc(1 << 20); /* something live to show */
        struct rlimit lim = {1ul << 30, 1ul << 30};
        if (setrlimit(RLIMIT_AS, &lim) != 0) {
            perror("setrlimit");
            return 1;
        }
        void *p = malloc(2ul << 30);
        if (p) {
            fprintf(stderr, "a 2 GiB malloc under a 1 GiB RLIMIT_AS succeeded\n");
            return 1;
        }
        free(keep);
        _exit(0);
    }
    pthread_t t[THREADS];
    for (size_t i = 0; i < THREADS; i++)
        pthread_create(&t[i], NULL, worker, (void *)(i + 1));
    char path[4096];
    for (int i = 0; i < 20; i++) {
        usleep(20000);
        if (!strcmp(mode, "threads")) {
            snprintf(path, sizeof path, "%s/dump-%d.prof", dir, i);
            if (dump(path) != 0) {
                perror("pagebreak_profile_dump");
                return 1;
            }
        } else if (!strcmp(mode, "signal")) {
            /* The handler writes PAGEBREAK_PROFILE_PATH at once, on whichever thread. */
            kill(getpid(), SIGUSR1);
        } else if (!strcmp(mode, "fork")) {
            /* fork can fail for a while (EAGAIN) when the machine is short of processes or
             * memory; unchecked, its -1 made waitpid(-1) fail with -1 too, and a child and
             * its dump went missing without an error. */
            pid_t pid;
            for (int tries = 0; (pid = fork()) < 0 && (errno == EAGAIN || errno == ENOMEM);
                 tries++) {
                if (tries == 100) break;
                usleep(10000);
            }
            if (pid < 0) {
                perror("fork");
                return 1;
            }
            if (pid == 0) {
                /* The child allocates, frees, and dumps on its own. */
                void *v[1000];
                for (int j = 0; j < 1000; j++) v[j] = malloc(1 + j * 37);
                for (int j = 0; j < 1000; j++) free(v[j]);
                snprintf(path, sizeof path, "%s/child-%d.prof", dir, i);
                _exit(dump(path) == 0 ? 0 : 1);
            }
            int status = 0;
            if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status)) {
                fprintf(stderr, "child %d failed (status %d)\n", i, status);
                return 1;
            }
        } else {
            fprintf(stderr, "unknown mode %s\n", mode);
            return 2;
        }
    }
    atomic_store(&stop, 1);
    for (size_t i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    for (size_t i = 0; i < SLOTS; i++)
        free(atomic_load(&shared[i]));
    return 0;
}
