/* PAGEBREAK_* options: the test re-runs itself (with pagebreak still preloaded) under chosen
   environments and checks what pagebreak writes to stderr. Nothing at all without options;
   the options line once with PAGEBREAK_VERBOSE=1; the statistics table at exit with
   PAGEBREAK_SHOW_STATS=1; a one-line warning and the default for a bad value or an unknown
   name; a heap picture after SIGUSR2 with PAGEBREAK_HEAPMAP. */
#include "common.h"

#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>

/* ---- the child: an ordinary workload ---- */

static void *thread_work(void *arg) {
    (void)arg;
    for (int i = 0; i < 5000; i++) {
        void *p = malloc((size_t)(i % 700) + 1);
        CHECK(p);
        free(p);
    }
    return NULL;
}

static void workload(void) {
    enum { N = 512 };
    static void *keep[N];
    uint64_t seed = 42;
    for (int i = 0; i < N; i++) {
        keep[i] = malloc(rnd_size(&seed));
        CHECK(keep[i]);
    }
    void *big = malloc(3 << 20);
    CHECK(big);
    big = realloc(big, 5 << 20);
    CHECK(big);
    free(big);
    pthread_t t[4];
    for (int i = 0; i < 4; i++) CHECK(pthread_create(&t[i], NULL, thread_work, NULL) == 0);
    for (int i = 0; i < 4; i++) CHECK(pthread_join(t[i], NULL) == 0);
    /* A forked child allocates too; it must not print the options again. */
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        free(malloc(100));
        free(malloc(1 << 20));
        _exit(0);
    }
    int status;
    CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    for (int i = 0; i < N; i++) free(keep[i]);
}

/* After SIGUSR2 the next allocator slow path writes the picture, before exit. */
static void usr2(void) {
    const char *path = getenv("PAGEBREAK_HEAPMAP");
    CHECK(path);
    CHECK(raise(SIGUSR2) == 0);
    struct stat st;
    for (int i = 0; i < 100 && stat(path, &st) != 0; i++) free(malloc((size_t)(4 + i % 4) << 20));
    CHECKF(stat(path, &st) == 0 && st.st_size > 0, "no heap picture at %s after SIGUSR2", path);
}

static int child(const char *mode) {
    workload();
    if (strcmp(mode, "usr2") == 0) usr2();
    if (strcmp(mode, "mark") == 0) fputs("options-test: main returns\n", stderr);
    return 0;
}

/* ---- the parent: run the child, check its stderr ---- */

static char out[1 << 16];

/* Runs this program as a child under exactly LD_PRELOAD and `vars` (NULL-terminated);
   returns its stderr in `out`. The child must exit 0. */
static const char *run(const char *mode, const char *const *vars) {
    static char preload[4096];
    snprintf(preload, sizeof preload, "LD_PRELOAD=%s", getenv("LD_PRELOAD"));
    const char *envp[16] = {preload};
    int n = 1;
    for (; vars[n - 1]; n++) {
        CHECK(n < 15);
        envp[n] = vars[n - 1];
    }
    envp[n] = NULL;
    int fds[2];
    CHECK(pipe(fds) == 0);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        dup2(fds[1], 2);
        close(fds[0]);
        close(fds[1]);
        char *argv[] = {"options", "--child", (char *)mode, NULL};
        execve("/proc/self/exe", argv, (char *const *)envp);
        _exit(127);
    }
    close(fds[1]);
    size_t len = 0;
    ssize_t r;
    while ((r = read(fds[0], out + len, sizeof out - 1 - len)) > 0) len += (size_t)r;
    close(fds[0]);
    out[len] = 0;
    int status;
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECKF(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child (%s %s) failed:\n%s", vars[0],
           mode, out);
    return out;
}

static int count_lines(const char *s) {
    int n = 0;
    for (; *s; s++) n += *s == '\n';
    return n;
}

/* The number of lines containing `needle`. */
static int lines_with(const char *s, const char *needle) {
    int n = 0;
    while (*s) {
        const char *end = strchr(s, '\n');
        size_t len = end ? (size_t)(end - s) : strlen(s);
        char line[512];
        snprintf(line, sizeof line, "%.*s", (int)len, s);
        n += strstr(line, needle) != NULL;
        s += len + (end != NULL);
    }
    return n;
}

/* The value after `key` (e.g. "purge_delay_ms=") in `s`, or -1. */
static long value_of(const char *s, const char *key) {
    const char *p = strstr(s, key);
    return p ? strtol(p + strlen(key), NULL, 10) : -1;
}

#define NONE ((const char *const[]){NULL})
#define VARS(...) ((const char *const[]){__VA_ARGS__, NULL})

int main(int argc, char **argv) {
    if (argc > 2 && strcmp(argv[1], "--child") == 0) return child(argv[2]);
    if (!is_pagebreak()) {
        puts("options: skipped (pagebreak not preloaded)");
        return 0;
    }
    const char *e;

    /* No option: not a byte on stderr. */
    e = run("plain", NONE);
    CHECKF(e[0] == 0, "stderr without options:\n%s", e);
    e = run("plain", VARS("PAGEBREAK_SHOW_STATS=0", "PAGEBREAK_VERBOSE=0"));
    CHECKF(e[0] == 0, "stderr with options off:\n%s", e);

    /* The options line, once (threads and a fork notwithstanding). */
    e = run("plain", VARS("PAGEBREAK_VERBOSE=1"));
    CHECKF(count_lines(e) == 1 && strncmp(e, "pagebreak: backend=", 19) == 0,
           "PAGEBREAK_VERBOSE=1:\n%s", e);
    long default_delay = value_of(e, "purge_delay_ms=");
    CHECKF(default_delay >= 0, "no purge_delay_ms in:\n%s", e);
    CHECKF(value_of(e, "huge_pages=") == 0, "huge_pages not 0 by default:\n%s", e);
    CHECKF(value_of(e, "purge_delay_max_ms=") == 1000, "longest purge delay not 1000:\n%s", e);

    /* Values are parsed. */
    e = run("plain", VARS("PAGEBREAK_VERBOSE=yes", "PAGEBREAK_PURGE_DELAY_MS=250",
                          "PAGEBREAK_PURGE_DELAY_MAX_MS=5000", "PAGEBREAK_HUGE_PAGES=1"));
    CHECKF(count_lines(e) == 1 && value_of(e, "purge_delay_ms=") == 250 &&
               value_of(e, "purge_delay_max_ms=") == 5000 && value_of(e, "huge_pages=") == 1,
           "options not applied:\n%s", e);

    /* The statistics table at exit: after main returns, starting with a `pagebreak` line. */
    e = run("mark", VARS("PAGEBREAK_SHOW_STATS=1"));
    const char *mark = "options-test: main returns\n";
    CHECKF(strncmp(e, mark, strlen(mark)) == 0, "output before main returned:\n%s", e);
    const char *table = e + strlen(mark);
    CHECKF(strncmp(table, "pagebreak", 9) == 0 && count_lines(table) >= 4,
           "PAGEBREAK_SHOW_STATS=1 printed:\n%s", e);

    /* A bad value: one warning line, and the default. */
    e = run("plain", VARS("PAGEBREAK_PURGE_DELAY_MS=abc", "PAGEBREAK_VERBOSE=1"));
    CHECKF(count_lines(e) == 2 && lines_with(e, "warning") == 1 &&
               lines_with(e, "PURGE_DELAY_MS") == 1 &&
               value_of(e, "purge_delay_ms=") == default_delay,
           "PAGEBREAK_PURGE_DELAY_MS=abc:\n%s", e);
    e = run("plain", VARS("PAGEBREAK_HUGE_PAGES=maybe"));
    CHECKF(count_lines(e) == 1 && lines_with(e, "warning") == 1 &&
               lines_with(e, "HUGE_PAGES") == 1,
           "PAGEBREAK_HUGE_PAGES=maybe:\n%s", e);

    /* An unknown name: one warning line. */
    e = run("plain", VARS("PAGEBREAK_FOO=1"));
    CHECKF(count_lines(e) == 1 && lines_with(e, "warning") == 1 && lines_with(e, "FOO") == 1,
           "PAGEBREAK_FOO=1:\n%s", e);

    /* A heap picture after SIGUSR2 (checked by the child) and at exit, silently. */
    char path[] = "/tmp/pagebreak-options-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    close(fd);
    unlink(path);
    char var[64];
    snprintf(var, sizeof var, "PAGEBREAK_HEAPMAP=%s", path);
    e = run("usr2", VARS(var));
    CHECKF(e[0] == 0, "PAGEBREAK_HEAPMAP printed:\n%s", e);
    FILE *f = fopen(path, "r");
    CHECK(f);
    char line[128];
    CHECK(fgets(line, sizeof line, f));
    fclose(f);
    unlink(path);
    CHECKF(strncmp(line, "pagebreak-heapmap 1 ", 20) == 0, "heap picture starts with %s", line);

    puts("options: ok");
    return 0;
}
