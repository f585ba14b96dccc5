// A program that replaces only `operator new(size_t)` and `operator delete(void *)`, as
// allocation-counting and pool allocators do: the other forms (new[], nothrow, sized delete)
// must still reach its replacements, as the C++ standard says they do by default. With
// pagebreak those forms stay libstdc++'s, which forward to the replaced ones; a library that
// exported its own sized delete or new[] would bypass them (and here free a pointer that is
// not a block start: pagebreak would abort).
#include "cpp_test.h"

#include <map>
#include <memory>
#include <new>
#include <string>
#include <vector>

// Replacing delete without its sized form is what this test is about.
#pragma GCC diagnostic ignored "-Wsized-deallocation"

namespace {

size_t news = 0, deletes = 0;
const uint64_t MAGIC = 0x7265706c61636564; // "replaced"

// Each block carries a 16-byte header in front: what this program's delete expects.
void *tagged_alloc(size_t n) {
    auto *base = static_cast<uint64_t *>(std::malloc(n + 16));
    if (base == nullptr) return nullptr;
    base[0] = MAGIC;
    base[1] = n;
    news++;
    return base + 2;
}

void tagged_free(void *p) {
    if (p == nullptr) return;
    auto *base = static_cast<uint64_t *>(p) - 2;
    CHECKF(base[0] == MAGIC, "operator delete(%p): not a block of the replaced operator new", p);
    base[0] = 0;
    deletes++;
    std::free(base);
}

} // namespace

void *operator new(size_t n) {
    void *p = tagged_alloc(n == 0 ? 1 : n);
    if (p == nullptr) throw std::bad_alloc();
    return p;
}

void operator delete(void *p) noexcept { tagged_free(p); }

int main(int argc, char **argv) {
    parse_mode(argc, argv);
    size_t n0 = news, d0 = deletes;

    auto *one = opaque(new std::string(100, 'x'));  // new, then sized delete
    delete one;
    auto *arr = opaque(new int[1000]);               // new[] -> new
    delete[] arr;                                    // delete[] -> delete
    auto *nt = opaque(new (std::nothrow) char[300]); // nothrow new[] -> new
    CHECK(nt != nullptr);
    delete[] nt;
    void *raw = opaque(::operator new(64));
    ::operator delete(raw, 64);                      // sized delete -> delete
    raw = opaque(::operator new[](64, std::nothrow));
    ::operator delete[](raw, std::nothrow);
    {
        std::vector<std::unique_ptr<std::string>> v;
        std::map<int, std::vector<int>> m;
        for (int i = 0; i < 1000; i++) {
            v.push_back(std::make_unique<std::string>(i % 97 + 20, 'a'));
            m[i % 50].push_back(i);
        }
        auto shared = std::make_shared<std::vector<double>>(500, 1.5);
        CHECK(v.size() == 1000 && m.size() == 50 && (*shared)[499] == 1.5);
    }
    size_t n = news - n0, d = deletes - d0;
    CHECKF(n == d, "%zu news, %zu deletes", n, d);
    CHECKF(n >= 1000 + 50, "only %zu calls reached the replaced operator new", n);
    std::printf("replaced_operators: %zu news and deletes through the program's operators\n",
                n);
    return 0;
}
