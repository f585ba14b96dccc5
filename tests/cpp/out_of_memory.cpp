// Out of memory under RLIMIT_AS (VmSize + 256 MiB): nothrow new returns nullptr, throwing
// new raises std::bad_alloc the program catches, a new_handler is called and its freed
// memory used, and everything works again after the frees. With pagebreak, malloc's NULL
// is what libstdc++'s operator new turns into these: they must stay exact.
#include "cpp_test.h"

#include <sys/resource.h>

#include <new>
#include <stdexcept>
#include <vector>

namespace {

const size_t MiB = 1u << 20;
const size_t HEADROOM = 256 * MiB;

size_t vm_size() {
    FILE *f = std::fopen("/proc/self/status", "r");
    CHECK(f != nullptr);
    char line[256];
    size_t kb = 0;
    while (std::fgets(line, sizeof line, f))
        if (std::sscanf(line, "VmSize: %zu kB", &kb) == 1) break;
    std::fclose(f);
    CHECK(kb > 0);
    return kb * 1024;
}

// Room for more than the headroom's worth of 1 MiB blocks, reserved before the limit.
std::vector<char *> *blocks;

void touch(char *p, size_t n) {
    for (size_t i = 0; i < n; i += 4096) p[i] = 1;
    p[n - 1] = 2;
}

// Allocates 1 MiB blocks with nothrow new until it returns nullptr; returns how many.
size_t fill_nothrow() {
    for (;;) {
        char *p = new (std::nothrow) char[MiB];
        if (p == nullptr) break;
        touch(p, MiB);
        CHECK(blocks->size() < blocks->capacity());
        blocks->push_back(p);
    }
    return blocks->size();
}

// The same with throwing new; the failure must arrive as std::bad_alloc.
size_t fill_throwing() {
    bool caught = false;
    try {
        for (;;) {
            char *p = new char[MiB];
            touch(p, MiB);
            CHECK(blocks->size() < blocks->capacity());
            blocks->push_back(p);
        }
    } catch (const std::bad_alloc &e) {
        caught = e.what() != nullptr;
    }
    CHECK(caught);
    return blocks->size();
}

void free_all() {
    for (char *p : *blocks) delete[] p;
    blocks->clear();
}

int handler_calls = 0;
bool may_release = true;
// A new_handler that gives back 16 MiB of `blocks` when allowed, else gives up: uninstalls
// itself, so operator new throws.
void release_reserve() {
    handler_calls++;
    if (may_release && !blocks->empty()) {
        for (int i = 0; i < 16 && !blocks->empty(); i++) {
            delete[] blocks->back();
            blocks->pop_back();
        }
    } else {
        std::set_new_handler(nullptr);
    }
}

void oversized_requests() {
    // Larger than the address space left: fails at once, both ways.
    const size_t huge = opaque(HEADROOM * 2);
    CHECK(new (std::nothrow) char[huge] == nullptr);
    CHECK(::operator new(huge, std::nothrow) == nullptr);
    CHECK(::operator new(huge, std::align_val_t(4 * MiB), std::nothrow) == nullptr);
    int caught = 0;
    try {
        char *p = opaque(new char[huge]);
        delete[] p;
    } catch (const std::bad_alloc &) {
        caught++;
    }
    try {
        ::operator delete(::operator new(huge, std::align_val_t(64 * 1024)),
                          std::align_val_t(64 * 1024));
    } catch (const std::bad_alloc &) {
        caught++;
    }
    // An array length whose byte count overflows size_t: std::bad_array_new_length, a
    // bad_alloc.
    try {
        size_t n = opaque(SIZE_MAX / 4);
        auto *p = opaque(new uint64_t[n]);
        delete[] p;
    } catch (const std::bad_alloc &) {
        caught++;
    }
    // A container asked for more than it can hold.
    try {
        std::vector<char> v;
        v.reserve(huge);
    } catch (const std::bad_alloc &) {
        caught++;
    } catch (const std::length_error &) {
        CHECKF(false, "vector::reserve(%zu) threw length_error, expected bad_alloc", huge);
    }
    CHECKF(caught == 4, "%d of 4 oversized requests raised bad_alloc", caught);
}

} // namespace

int main(int argc, char **argv) {
    parse_mode(argc, argv);
    blocks = new std::vector<char *>();
    blocks->reserve(2 * HEADROOM / MiB);
    free(malloc(100)); // the allocator is set up before the limit

    size_t limit = vm_size() + HEADROOM;
    struct rlimit rl = {limit, limit};
    CHECK(setrlimit(RLIMIT_AS, &rl) == 0);

    oversized_requests();

    size_t first = fill_nothrow();
    CHECKF(first * MiB >= HEADROOM / 2, "only %zu MiB fit in %zu MiB of headroom", first,
           HEADROOM / MiB);
    oversized_requests(); // still the same answers when really out of memory
    free_all();
    size_t second = fill_throwing();
    CHECKF(second >= first - first / 20, "%zu MiB fit, then %zu after freeing", first, second);

    // Memory is exhausted and `blocks` holds it all: the handler frees 16 MiB, the retry
    // inside operator new succeeds.
    std::set_new_handler(release_reserve);
    char *p = opaque(new char[MiB]);
    touch(p, MiB);
    CHECKF(handler_calls == 1, "new_handler called %d times", handler_calls);
    delete[] p;
    // Exhausted again, and the handler has nothing to give: it uninstalls itself, and
    // operator new throws bad_alloc after calling it once.
    std::set_new_handler(nullptr);
    free_all();
    size_t third = fill_nothrow();
    CHECK(third > 0);
    may_release = false;
    handler_calls = 0;
    std::set_new_handler(release_reserve);
    bool caught = false;
    try {
        char *q = opaque(new char[MiB]);
        delete[] q;
    } catch (const std::bad_alloc &) {
        caught = true;
    }
    CHECKF(caught && handler_calls == 1, "caught %d, handler called %d times", caught,
           handler_calls);
    CHECK(std::get_new_handler() == nullptr);
    free_all();

    // Everything freed: the headroom is usable again.
    size_t last = fill_nothrow();
    CHECKF(last >= first - first / 20, "%zu MiB fit at first, %zu at the end", first, last);
    free_all();
    std::printf("out_of_memory: %zu, %zu, %zu, %zu MiB of 1 MiB blocks fit\n", first, second,
                third, last);
    return 0;
}
