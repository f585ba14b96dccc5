// STL containers built on one thread and destroyed on another (remote frees through
// operator delete), std::async results, exceptions carried across threads, and per-thread
// container churn, on 8 threads. Contents are checked on arrival.
#include "cpp_test.h"

#include <condition_variable>
#include <deque>
#include <exception>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

namespace {

const int PRODUCERS = 4;
const int CONSUMERS = 4;
const int PARCELS = 3000; // per producer

// What a producer sends: containers of every shape, filled from its seed.
struct Parcel {
    uint64_t seed;
    std::string text;
    std::vector<uint64_t> numbers;
    std::map<int, std::string> names;
    std::unique_ptr<std::vector<std::string>> words;
    std::shared_ptr<const std::string> shared;
};

std::string text_for(uint64_t seed) {
    return std::string(1 + seed % 300, static_cast<char>('a' + seed % 26)) +
           std::to_string(seed);
}

std::unique_ptr<Parcel> make_parcel(uint64_t seed,
                                    const std::shared_ptr<const std::string> &shared) {
    auto p = std::make_unique<Parcel>();
    p->seed = seed;
    p->text = text_for(seed);
    p->numbers.resize(seed % 2000);
    for (size_t i = 0; i < p->numbers.size(); i++) p->numbers[i] = seed * 31 + i;
    for (int i = 0; i < static_cast<int>(seed % 50); i++) p->names[i] = text_for(seed + i);
    p->words = std::make_unique<std::vector<std::string>>();
    for (uint64_t i = 0; i < seed % 20; i++) p->words->push_back(text_for(seed ^ i));
    p->shared = shared;
    return p;
}

void check_parcel(const Parcel &p) {
    CHECKF(p.text == text_for(p.seed), "parcel %llu: text", (unsigned long long)p.seed);
    CHECK(p.numbers.size() == p.seed % 2000);
    for (size_t i = 0; i < p.numbers.size(); i++) CHECK(p.numbers[i] == p.seed * 31 + i);
    CHECK(p.names.size() == p.seed % 50);
    for (auto &kv : p.names) CHECK(kv.second == text_for(p.seed + kv.first));
    CHECK(p.words->size() == p.seed % 20);
    for (uint64_t i = 0; i < p.words->size(); i++) CHECK((*p.words)[i] == text_for(p.seed ^ i));
    CHECK(*p.shared == "shared by every parcel of one producer");
}

// A queue of parcels: producers push, consumers pop and destroy them.
struct Queue {
    std::mutex lock;
    std::condition_variable ready;
    std::deque<std::unique_ptr<Parcel>> parcels;
    int producers_left = PRODUCERS;
};

void produce(Queue &q, int id) {
    // One string shared by all of this producer's parcels; its last owner (a consumer
    // thread) frees it.
    auto shared = std::make_shared<const std::string>("shared by every parcel of one producer");
    for (int i = 0; i < PARCELS; i++) {
        auto p = make_parcel(static_cast<uint64_t>(id) * 1000003 + i * 7919, shared);
        std::lock_guard<std::mutex> g(q.lock);
        q.parcels.push_back(std::move(p));
        q.ready.notify_one();
    }
    std::lock_guard<std::mutex> g(q.lock);
    q.producers_left--;
    q.ready.notify_all();
}

size_t consume(Queue &q) {
    size_t n = 0;
    for (;;) {
        std::unique_ptr<Parcel> p;
        {
            std::unique_lock<std::mutex> g(q.lock);
            q.ready.wait(g, [&] { return !q.parcels.empty() || q.producers_left == 0; });
            if (q.parcels.empty()) return n;
            p = std::move(q.parcels.front());
            q.parcels.pop_front();
        }
        check_parcel(*p);
        n++;
        // Also churn a thread-local container.
        std::unordered_map<uint64_t, std::string> local;
        for (uint64_t i = 0; i < p->seed % 64; i++) local.emplace(i, text_for(i));
    } // p is destroyed here, on the consumer thread
}

void parcels_across_threads() {
    Queue q;
    std::vector<std::thread> producers;
    std::vector<std::future<size_t>> consumers;
    for (int c = 0; c < CONSUMERS; c++)
        consumers.push_back(std::async(std::launch::async, consume, std::ref(q)));
    for (int p = 0; p < PRODUCERS; p++) producers.emplace_back(produce, std::ref(q), p);
    for (auto &t : producers) t.join();
    size_t total = 0;
    for (auto &f : consumers) total += f.get();
    CHECKF(total == size_t(PRODUCERS) * PARCELS, "%zu parcels arrived", total);
}

// Exceptions allocate their objects with malloc (__cxa_allocate_exception); thrown on one
// thread, they are rethrown and freed on another.
void exceptions_across_threads() {
    std::vector<std::future<std::string>> results;
    for (int i = 0; i < 64; i++)
        results.push_back(std::async(std::launch::async, [i]() -> std::string {
            std::string what = text_for(i * 1000);
            if (i % 2) throw std::runtime_error(what);
            return what;
        }));
    for (int i = 0; i < 64; i++) {
        try {
            std::string s = results[i].get();
            CHECK(i % 2 == 0 && s == text_for(i * 1000));
        } catch (const std::runtime_error &e) {
            CHECK(i % 2 == 1 && e.what() == text_for(i * 1000));
        }
    }
}

} // namespace

int main(int argc, char **argv) {
    Mode mode = parse_mode(argc, argv);
    parcels_across_threads();
    exceptions_across_threads();
    if (mode != Mode::Glibc) {
        struct pagebreak_stats s;
        CHECK(read_pagebreak_stats(&s));
        CHECKF(s.remote_frees > 0, "no remote frees counted");
        std::printf("stl_threads: %zu remote frees\n", s.remote_frees);
    } else {
        std::printf("stl_threads: ok\n");
    }
    return 0;
}
