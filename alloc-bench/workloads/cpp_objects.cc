// A C++ program in the common style: std::string, std::vector, std::map, std::unordered_map
// and std::shared_ptr messages passed between threads. Each worker builds an index of
// documents (strings split into words, counted in a hash map, ordered in a map), edits the
// strings, and sends shared_ptr'd messages to the next worker, which checks them and drops
// the last reference there (so objects die on another thread than the one that made them).
// Every worker's results are recomputed and checked; the program exits 1 on a mismatch.
//
//   cpp_objects ROUNDS [THREADS]      per worker and round: 2000 documents, 2000 messages
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

namespace {

constexpr int kDocs = 2000;
constexpr int kMessages = 2000;

uint64_t mix(uint64_t x) {
    x += 0x9E3779B97F4A7C15ULL;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
    return x ^ (x >> 31);
}

const char *const kWords[] = {"lorem", "ipsum", "dolor", "sit", "amet", "consectetur",
                              "adipiscing", "elit", "sed", "do", "eiusmod", "tempor",
                              "incididunt", "ut", "labore", "et", "dolore", "magna"};
constexpr size_t kNumWords = sizeof kWords / sizeof kWords[0];

// A document: 5..60 words, a pure function of its id.
std::string document(uint64_t id) {
    uint64_t h = mix(id);
    size_t n = 5 + h % 56;
    std::string s;
    for (size_t i = 0; i < n; i++) {
        if (i) s += ' ';
        s += kWords[mix(h + i) % kNumWords];
        if (mix(h ^ i) % 7 == 0) s += std::to_string(i);
    }
    return s;
}

struct Message {
    uint64_t id;
    std::string text;
    std::vector<double> values;
    std::map<std::string, int> fields;
};

std::shared_ptr<Message> make_message(uint64_t id) {
    auto m = std::make_shared<Message>();
    m->id = id;
    m->text = document(id * 31 + 7);
    uint64_t h = mix(id);
    m->values.resize(h % 40);
    for (size_t i = 0; i < m->values.size(); i++) m->values[i] = double((h >> (i % 48)) & 0xffff) / 8.0;
    for (size_t i = 0; i < h % 6; i++) m->fields["field" + std::to_string(i)] = int(i * id % 1000);
    return m;
}

// Word count and length of document(id), computed without building it.
void doc_shape(uint64_t id, uint64_t &words, uint64_t &len) {
    uint64_t h = mix(id);
    size_t n = 5 + h % 56;
    words = n;
    len = 0;
    for (size_t i = 0; i < n; i++) {
        if (i) len++;
        len += std::char_traits<char>::length(kWords[mix(h + i) % kNumWords]);
        if (mix(h ^ i) % 7 == 0) len += std::to_string(i).size();
    }
}

bool same(const Message &m) {
    auto r = make_message(m.id);
    return m.text == r->text && m.values == r->values && m.fields == r->fields;
}

// A mutex-and-condvar queue of shared_ptrs, one per worker (its inbox).
struct Inbox {
    std::mutex lock;
    std::condition_variable ready;
    std::deque<std::shared_ptr<Message>> q;

    void put(std::shared_ptr<Message> m) {
        {
            std::lock_guard<std::mutex> g(lock);
            q.push_back(std::move(m));
        }
        ready.notify_one();
    }
    std::shared_ptr<Message> take() {
        std::unique_lock<std::mutex> g(lock);
        ready.wait(g, [&] { return !q.empty(); });
        auto m = std::move(q.front());
        q.pop_front();
        return m;
    }
};

struct Result {
    uint64_t words = 0, postings = 0, checked = 0, bad = 0, chars = 0;
};

uint64_t doc_id(int worker, long round, int d) {
    return (uint64_t(round) << 40) | (uint64_t(worker) << 24) | uint64_t(d);
}

// Indexes one round's documents and edits them.
void index_docs(int worker, long round, Result &r) {
    std::unordered_map<std::string, std::vector<uint32_t>> postings;
    std::map<std::string, size_t> longest;
    std::vector<std::string> docs;
    docs.reserve(kDocs / 4);  // grows past this: reallocation of a vector of strings
    for (int d = 0; d < kDocs; d++) {
        docs.push_back(document(doc_id(worker, round, d)));
    }
    for (size_t d = 0; d < docs.size(); d++) {
        const std::string &s = docs[d];
        size_t start = 0;
        while (start <= s.size()) {
            size_t end = s.find(' ', start);
            if (end == std::string::npos) end = s.size();
            std::string w = s.substr(start, end - start);
            r.words++;
            auto &p = postings[w];
            p.push_back(uint32_t(d));
            auto it = longest.find(w);
            if (it == longest.end() || it->second < s.size()) longest[w] = s.size();
            start = end + 1;
        }
    }
    for (auto &p : postings) r.postings += p.second.size();
    if (longest.size() != postings.size()) r.bad++;
    // Edit every document: an uppercase copy of its first half appended, a quarter cut
    // from the front, as text processing does; the main thread checks the lengths.
    for (auto &s : docs) {
        std::string upper = s.substr(0, s.size() / 2);
        for (auto &c : upper) c = char(c >= 'a' && c <= 'z' ? c - 32 : c);
        s += " | " + upper;
        s.erase(0, s.size() / 4);
        r.chars += s.size();
    }
}

}  // namespace

int main(int argc, char **argv) {
    long rounds = argc > 1 ? std::atol(argv[1]) : 20;
    int threads = argc > 2 ? std::atoi(argv[2]) : 3;
    if (rounds < 1 || threads < 1 || threads > 256) {
        std::fprintf(stderr, "usage: cpp_objects ROUNDS [THREADS]\n");
        return 2;
    }
    std::vector<Inbox> inboxes(threads);
    std::vector<Result> results(threads);
    std::vector<std::thread> pool;
    for (int w = 0; w < threads; w++) {
        pool.emplace_back([&, w] {
            Result &r = results[w];
            Inbox &next = inboxes[(w + 1) % threads];
            Inbox &mine = inboxes[w];
            for (long round = 0; round < rounds; round++) {
                index_docs(w, round, r);
                // Send a round of messages, keeping every fourth one alive here too, so
                // some objects lose their last reference on this thread and some there.
                std::vector<std::shared_ptr<Message>> kept;
                for (int i = 0; i < kMessages; i++) {
                    auto m = make_message(doc_id(w, round, i));
                    if (i % 4 == 0) kept.push_back(m);
                    next.put(std::move(m));
                }
                for (int i = 0; i < kMessages; i++) {
                    auto m = mine.take();
                    r.checked++;
                    if (!same(*m)) r.bad++;
                }
            }
        });
    }
    for (auto &t : pool) t.join();

    int status = 0;
    for (int w = 0; w < threads; w++) {
        // What the worker must have found, from the generator alone (nothing allocated).
        Result want;
        for (long round = 0; round < rounds; round++) {
            for (int d = 0; d < kDocs; d++) {
                uint64_t words, len;
                doc_shape(doc_id(w, round, d), words, len);
                want.words += words;
                uint64_t n = len + 3 + len / 2;
                want.chars += n - n / 4;
            }
        }
        const Result &got = results[w];
        if (got.words != want.words || got.postings != want.words || got.chars != want.chars ||
            got.checked != uint64_t(rounds) * kMessages || got.bad) {
            std::fprintf(stderr,
                         "cpp_objects: worker %d differs: words %llu/%llu postings %llu "
                         "chars %llu/%llu messages %llu (%llu bad)\n",
                         w, (unsigned long long)got.words, (unsigned long long)want.words,
                         (unsigned long long)got.postings,
                         (unsigned long long)got.chars, (unsigned long long)want.chars,
                         (unsigned long long)got.checked, (unsigned long long)got.bad);
            status = 1;
        }
    }
    if (status == 0) std::printf("cpp_objects: %d threads x %ld rounds, all checked\n", threads, rounds);
    return status;
}
