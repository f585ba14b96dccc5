// Every form of operator new and delete a C++ program uses, served by pagebreak:
// new/delete, new[]/delete[] (with constructors and destructors run), sized delete, aligned
// new (std::align_val_t, 16 B to 4 MiB), nothrow new, over-aligned types in containers.
#include "cpp_test.h"

#include <malloc.h>

#include <memory>
#include <new>
#include <vector>

namespace {

unsigned char pattern(size_t seed, size_t i) {
    return static_cast<unsigned char>(seed * 131 + i * 7 + (i >> 8));
}

void fill(void *p, size_t n, size_t seed) {
    auto *b = static_cast<unsigned char *>(p);
    for (size_t i = 0; i < n; i++) b[i] = pattern(seed, i);
}

bool intact(const void *p, size_t n, size_t seed) {
    auto *b = static_cast<const unsigned char *>(p);
    for (size_t i = 0; i < n; i++)
        if (b[i] != pattern(seed, i)) return false;
    return true;
}

// malloc_usable_size of a pointer pagebreak did not hand out aborts with a report, so a
// plausible answer also says the block is pagebreak's.
void check_owned(Mode mode, void *p, size_t size) {
    if (mode == Mode::Glibc) return;
    size_t usable = malloc_usable_size(p);
    CHECKF(usable >= size, "%p: usable %zu < %zu", p, usable, size);
}

int live_objects = 0;
size_t next_id = 0;

struct Tracked {
    size_t id;
    unsigned char payload[40];
    explicit Tracked(size_t i) : id(i) {
        live_objects++;
        fill(payload, sizeof payload, i);
    }
    Tracked() : Tracked(next_id++) {}
    ~Tracked() {
        CHECK(intact(payload, sizeof payload, id));
        live_objects--;
    }
};

// Class-specific sized deallocation: the size operator delete receives is the object's.
size_t sized_deletes = 0;
struct SizedDelete {
    char bytes[200];
    static void *operator new(size_t n) { return ::operator new(n); }
    static void operator delete(void *p, size_t n) {
        CHECK(n == sizeof(SizedDelete));
        sized_deletes++;
        ::operator delete(p, n);
    }
};

struct alignas(4096) PageAligned {
    unsigned char bytes[4096];
};

void scalar_and_array(Mode mode) {
    // Sizes across every pagebreak size regime: small, medium, large, huge.
    const size_t sizes[] = {1, 8, 16, 24, 100, 1000, 8192, 8193, 100000, 131072,
                            500000, 1 << 20, (1 << 20) + 1, 5 << 20};
    std::vector<std::pair<unsigned char *, size_t>> blocks;
    for (size_t round = 0; round < 20; round++)
        for (size_t s : sizes) {
            auto *p = new unsigned char[s];
            fill(p, s, blocks.size());
            check_owned(mode, p, s);
            blocks.emplace_back(p, s);
        }
    for (size_t i = 0; i < blocks.size(); i++) {
        CHECKF(intact(blocks[i].first, blocks[i].second, i), "block %zu of %zu B", i,
               blocks[i].second);
        delete[] blocks[i].first;
    }

    // Objects with constructors and destructors, one by one and in arrays.
    std::vector<Tracked *> objects;
    for (size_t i = 0; i < 10000; i++) objects.push_back(new Tracked(i));
    CHECK(live_objects == 10000);
    for (Tracked *o : objects) delete o;
    CHECK(live_objects == 0);
    for (size_t n : {1u, 3u, 100u, 5000u, 30000u}) {
        Tracked *arr = new Tracked[n];
        // (An array with destructors starts after a count: `arr` is not the block itself.)
        CHECK(live_objects == static_cast<int>(n));
        delete[] arr;
        CHECK(live_objects == 0);
    }
}

void sized_delete(Mode mode) {
    for (int i = 0; i < 1000; i++) {
        auto *p = new SizedDelete;
        fill(p->bytes, sizeof p->bytes, i);
        check_owned(mode, p, sizeof *p);
        delete p;
    }
    CHECK(sized_deletes == 1000);
    // The global sized forms, called directly.
    for (size_t s : {16ul, 300ul, 70000ul, 3ul << 20}) {
        void *p = ::operator new(s);
        fill(p, s, s);
        check_owned(mode, p, s);
        CHECK(intact(p, s, s));
        ::operator delete(p, s);
        void *q = ::operator new[](s);
        check_owned(mode, q, s);
        ::operator delete[](q, s);
    }
}

void aligned(Mode mode) {
    size_t before = pagebreak_allocated();
    for (size_t align = 16; align <= (4u << 20); align *= 2) {
        for (size_t size : {size_t(1), align / 2, align, 3 * align + 5}) {
            if (size == 0) continue;
            void *p = ::operator new(size, std::align_val_t(align));
            CHECKF(aligned_to(p, align), "new(%zu, align %zu) = %p", size, align, p);
            check_owned(mode, p, size);
            fill(p, size, align + size);
            void *q = ::operator new[](size, std::align_val_t(align), std::nothrow);
            CHECKF(q != nullptr && aligned_to(q, align), "new[](%zu, align %zu, nothrow) = %p",
                   size, align, q);
            check_owned(mode, q, size);
            CHECK(intact(p, size, align + size));
            if (size % 2) {
                ::operator delete(p, size, std::align_val_t(align));
                ::operator delete[](q, std::align_val_t(align));
            } else {
                ::operator delete(p, std::align_val_t(align));
                ::operator delete[](q, size, std::align_val_t(align));
            }
        }
    }
    // A 4 MiB block aligned to 4 MiB shows in pagebreak's own counters while it lives.
    const size_t big = 4u << 20;
    void *p = ::operator new(big, std::align_val_t(big));
    CHECK(aligned_to(p, big));
    std::memset(p, 0x5a, big);
    if (mode != Mode::Glibc) {
        size_t now = pagebreak_allocated();
        CHECKF(now >= before + big, "pagebreak counts %zu B allocated, %zu before a 4 MiB block",
               now, before);
    }
    ::operator delete(p, std::align_val_t(big));

    // Over-aligned types: the compiler picks the aligned operators itself.
    std::vector<PageAligned> pages(37);
    CHECK(aligned_to(pages.data(), 4096));
    check_owned(mode, pages.data(), 37 * sizeof(PageAligned));
    pages.resize(300); // reallocation keeps the alignment
    CHECK(aligned_to(pages.data(), 4096));
    auto one = std::make_unique<PageAligned>();
    CHECK(aligned_to(one.get(), 4096));
    auto *arr = new PageAligned[5];
    CHECK(aligned_to(arr, 4096));
    delete[] arr;
}

void nothrow_forms(Mode mode) {
    for (size_t s : {0ul, 1ul, 64ul, 4096ul, 1ul << 20}) {
        auto *p = new (std::nothrow) unsigned char[s];
        CHECK(p != nullptr);
        check_owned(mode, p, s);
        delete[] p;
        void *q = ::operator new(s, std::nothrow);
        CHECK(q != nullptr);
        ::operator delete(q, std::nothrow);
    }
    // new of size 0 returns a distinct pointer each time.
    void *a = ::operator new(0), *b = ::operator new(0);
    CHECK(a != nullptr && b != nullptr && a != b);
    ::operator delete(a);
    ::operator delete(b);
}

} // namespace

int main(int argc, char **argv) {
    Mode mode = parse_mode(argc, argv);
    scalar_and_array(mode);
    sized_delete(mode);
    aligned(mode);
    nothrow_forms(mode);
    std::printf("new_delete: ok\n");
    return 0;
}
