// env: PAGEBREAK_GUARDED=1
/* Guarded sampling installs a SIGSEGV handler; a program that installs its own afterwards
   replaces it and gets its faults directly (here a write to its own PROT_NONE page, fixed up
   by the handler). Guarded blocks keep working meanwhile. */
#include "common.h"
#include "guarded.h"
#include <signal.h>
#include <sys/mman.h>

static volatile sig_atomic_t faults;
static char *volatile own_page;

static void on_segv(int sig, siginfo_t *info, void *ctx) {
    (void)sig;
    (void)ctx;
    if ((char *)info->si_addr != own_page + 7) _exit(5);
    faults++;
    if (mprotect(own_page, 4096, PROT_READ | PROT_WRITE) != 0) _exit(6);
}

int main(void) {
    char *p = malloc(100);
    CHECK(p != NULL);
    if (is_pagebreak()) {
        CHECK(guarded_right(p));
        struct sigaction theirs;
        CHECK(sigaction(SIGSEGV, NULL, &theirs) == 0);
        CHECKF((theirs.sa_flags & SA_SIGINFO) && theirs.sa_sigaction != NULL,
               "no SIGSEGV handler under PAGEBREAK_GUARDED");
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    CHECK(sigaction(SIGSEGV, &sa, NULL) == 0);
    own_page = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(own_page != MAP_FAILED);
    for (int i = 0; i < 5; i++) {
        CHECK(mprotect(own_page, 4096, PROT_NONE) == 0);
        ((volatile char *)own_page)[7] = (char)i;
        char *q = malloc(200);
        CHECK(q != NULL);
        fill(q, 200, i);
        CHECK(verify(q, 200, i) == 200);
        free(q);
    }
    CHECKF(faults == 5, "%d faults of 5", (int)faults);
    free(p);
    return 0;
}
