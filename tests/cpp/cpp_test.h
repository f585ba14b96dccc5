// Shared by the C++ tests: CHECK, how the program got pagebreak, its statistics.
//
// Each test takes one argument, how it was built and run: `preload` (LD_PRELOAD),
// `dynamic` (linked with -lpagebreak), `static` (linked with libpagebreak.a), or `glibc`
// (no pagebreak: checks the test itself; pagebreak-only checks are skipped).
#ifndef PAGEBREAK_CPP_TEST_H
#define PAGEBREAK_CPP_TEST_H

#include <dlfcn.h>
#include <pagebreak.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#define CHECK(e)                                                                        \
    do {                                                                                \
        if (!(e)) {                                                                     \
            std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #e);  \
            std::exit(1);                                                               \
        }                                                                               \
    } while (0)

#define CHECKF(e, ...)                                                                  \
    do {                                                                                \
        if (!(e)) {                                                                     \
            std::fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #e); \
            std::fprintf(stderr, __VA_ARGS__);                                          \
            std::fputc('\n', stderr);                                                   \
            std::exit(1);                                                               \
        }                                                                               \
    } while (0)

// Hides a value from the optimiser, which may otherwise drop a new/delete pair or reason
// from a size it knows to be impossible.
template <typename T>
inline T opaque(T x) {
    __asm__ volatile("" : "+r"(x));
    return x;
}

inline bool aligned_to(const void *p, size_t a) {
    return (reinterpret_cast<uintptr_t>(p) & (a - 1)) == 0;
}

enum class Mode { Preload, Dynamic, Static, Glibc };

// Parses argv[1] and checks that malloc really comes from where the mode says.
inline Mode parse_mode(int argc, char **argv) {
    CHECKF(argc == 2, "usage: %s preload|dynamic|static|glibc", argv[0]);
    std::string m = argv[1];
    Mode mode = Mode::Glibc;
    if (m == "preload")
        mode = Mode::Preload;
    else if (m == "dynamic")
        mode = Mode::Dynamic;
    else if (m == "static")
        mode = Mode::Static;
    else
        CHECKF(m == "glibc", "unknown mode %s", argv[1]);
    void *sym = dlsym(RTLD_DEFAULT, "malloc");
    Dl_info info;
    CHECK(sym != nullptr && dladdr(sym, &info) && info.dli_fname != nullptr);
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    CHECK(n > 0);
    exe[n] = 0;
    bool from_pagebreak = std::strstr(info.dli_fname, "libpagebreak.so") != nullptr;
    bool from_exe = std::strcmp(info.dli_fname, exe) == 0;
    switch (mode) {
    case Mode::Preload:
    case Mode::Dynamic:
        CHECKF(from_pagebreak, "malloc comes from %s (%s)", info.dli_fname, argv[1]);
        break;
    case Mode::Static:
        CHECKF(from_exe, "malloc comes from %s, not the executable (static)", info.dli_fname);
        break;
    case Mode::Glibc:
        CHECKF(!from_pagebreak && !from_exe, "malloc comes from %s (glibc)", info.dli_fname);
        break;
    }
    return mode;
}

// pagebreak's statistics; false without pagebreak. Linked programs call the function,
// preloaded ones find it at run time (they are not linked with pagebreak).
inline bool read_pagebreak_stats(struct pagebreak_stats *out) {
#ifdef PAGEBREAK_LINKED
    return pagebreak_stats_get(out) == 0;
#else
    using get_fn = int (*)(struct pagebreak_stats *);
    auto get = reinterpret_cast<get_fn>(dlsym(RTLD_DEFAULT, "pagebreak_stats_get"));
    return get != nullptr && get(out) == 0;
#endif
}

// Bytes pagebreak counts as allocated; 0 without pagebreak.
inline size_t pagebreak_allocated() {
    struct pagebreak_stats s;
    return read_pagebreak_stats(&s) ? s.allocated : 0;
}

#endif
