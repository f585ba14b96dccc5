/* Runs one workload and prints what it cost, measured from outside the program so that
 * every allocator is timed the same way.
 *
 *   runner [-t TIMEOUT_S] [-e NAME=VALUE]... -- PROG [ARGS...]
 *
 * The environment given with -e (LD_PRELOAD, ...) reaches only PROG, never the runner.
 * PROG's stdout goes to /dev/null; its stderr is passed through. One line on stdout:
 *   wall_s=.. maxrss_kb=.. utime_s=.. stime_s=.. minflt=.. majflt=.. status=exit:N|signal:N|timeout
 * The rusage comes from wait4() on PROG alone, so ru_maxrss is PROG's peak RSS.
 * Exit status: 0 when PROG was measured (whatever PROG's own status), 2 on a usage error.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t timed_out;
static volatile pid_t child;

static void on_alarm(int sig) {
    (void)sig;
    timed_out = 1;
    if (child > 0) kill(child, SIGKILL);
}

static double secs(struct timeval tv) { return tv.tv_sec + tv.tv_usec / 1e6; }

int main(int argc, char **argv) {
    unsigned timeout = 0;
    char *envs[64];
    int nenv = 0, i = 1;
    for (; i < argc; i++) {
        if (!strcmp(argv[i], "--")) { i++; break; }
        if (!strcmp(argv[i], "-t") && i + 1 < argc) { timeout = (unsigned)atoi(argv[++i]); continue; }
        if (!strcmp(argv[i], "-e") && i + 1 < argc && nenv < 64) { envs[nenv++] = argv[++i]; continue; }
        fprintf(stderr, "runner: bad argument %s\n", argv[i]);
        return 2;
    }
    if (i >= argc) {
        fprintf(stderr, "usage: runner [-t TIMEOUT_S] [-e NAME=VALUE]... -- PROG [ARGS...]\n");
        return 2;
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm; /* no SA_RESTART: wait4 must wake up */
    sigaction(SIGALRM, &sa, NULL);

    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    pid_t pid = fork();
    if (pid < 0) { perror("runner: fork"); return 2; }
    if (pid == 0) {
        for (int k = 0; k < nenv; k++) putenv(envs[k]);
        int null = open("/dev/null", O_WRONLY);
        if (null >= 0) dup2(null, 1);
        execvp(argv[i], argv + i);
        fprintf(stderr, "runner: cannot run %s: %s\n", argv[i], strerror(errno));
        _exit(127);
    }
    child = pid;
    if (timeout) alarm(timeout);

    int status = 0;
    struct rusage ru;
    while (wait4(pid, &status, 0, &ru) < 0) {
        if (errno != EINTR) { perror("runner: wait4"); return 2; }
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    alarm(0);

    char st[32];
    if (timed_out) snprintf(st, sizeof st, "timeout");
    else if (WIFSIGNALED(status)) snprintf(st, sizeof st, "signal:%d", WTERMSIG(status));
    else snprintf(st, sizeof st, "exit:%d", WEXITSTATUS(status));
    double wall = (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
    printf("wall_s=%.6f maxrss_kb=%ld utime_s=%.6f stime_s=%.6f minflt=%ld majflt=%ld status=%s\n",
           wall, ru.ru_maxrss, secs(ru.ru_utime), secs(ru.ru_stime), ru.ru_minflt, ru.ru_majflt, st);
    return 0;
}
