// expect: use-after-free write at
// pointer: exact
// env: PAGEBREAK_GUARDED=1
// rest: : 0 bytes into the freed 48-byte block at {block}
// stacks: faulting instruction | allocated at | freed at
/* A program with a SIGSEGV handler of its own, installed before pagebreak's (before the
   first malloc): pagebreak's handler goes on top and passes every fault outside its pool to
   the program's (a fault on the program's own PROT_NONE page, a SIGSEGV sent with raise()),
   which sees the right address and can recover. A use after free of a guarded block is still
   pagebreak's to report. */
#include "misuse.h"
#include "guarded.h"
#include <signal.h>
#include <sys/mman.h>

static volatile sig_atomic_t faults, raised;
static char *volatile own_page;

static void on_segv(int sig, siginfo_t *info, void *ctx) {
    (void)ctx;
    if (sig != SIGSEGV) _exit(4);
    if (info->si_code == SI_TKILL || info->si_code == SI_USER) {
        raised++;
        return;
    }
    if ((char *)info->si_addr != own_page + 100) _exit(5);
    faults++;
    /* Recover: make the page accessible, the faulting write runs again and succeeds. */
    if (mprotect(own_page, 4096, PROT_READ | PROT_WRITE) != 0) _exit(6);
}

int main(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    CHECK(sigaction(SIGSEGV, &sa, NULL) == 0);

    char *p = malloc(48); /* pagebreak starts here and installs its handler */
    CHECK(p != NULL);
    CHECK(guarded_right(p));
    struct sigaction now;
    CHECK(sigaction(SIGSEGV, NULL, &now) == 0);
    CHECKF(now.sa_sigaction != on_segv, "pagebreak's handler is not installed on top");

    own_page = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(own_page != MAP_FAILED);
    for (int i = 0; i < 3; i++) {
        CHECK(mprotect(own_page, 4096, PROT_NONE) == 0);
        ((volatile char *)own_page)[100] = (char)i;
        CHECK(own_page[100] == (char)i);
    }
    CHECKF(faults == 3, "the program's handler saw %d faults of 3", (int)faults);
    CHECK(raise(SIGSEGV) == 0);
    CHECKF(raised == 1, "the program's handler saw %d raised signals of 1", (int)raised);

    show(p);
    free(p);
    show(p);
    ((volatile char *)hide(p))[0] = 1;
    return survived();
}
