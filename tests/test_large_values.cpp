// Large values through the process pool's shared memory: every size around
// the threshold, both ways, in every kind of value; a worker killed in the
// middle of a transfer leaks no segment; the frame and memory limits hold;
// a worker that forges a segment is a crashed worker, never a crashed parent.
#include "corun/process_pool.hpp"

#include <grp.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fcntl.h>
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "corun/gather.hpp"
#include "corun/range.hpp"
#include "frame.hpp"
#include "process_support.hpp"
#include "shared_segment.hpp"
#include "support.hpp"

using namespace corun_test;
using namespace std::chrono_literals;
using corun::awaitable;

namespace {

constexpr std::size_t threshold = corun::detail::wire::shared_block_min;

/// The sizes a test sends: nothing, around the threshold, and well past it.
const std::vector<std::size_t> sizes = {
    0, 1, threshold - 1, threshold, threshold + 1, 3 * threshold + 5, (64 << 20) + 3};

std::string pattern(std::size_t n, int seed) {
    std::string s(n, '\0');
    for (std::size_t i = 0; i < n; ++i)
        s[i] = static_cast<char>((i * 131 + static_cast<std::size_t>(seed)) >> 3);
    return s;
}

/// In a task: does this process hold a frame's shared segment right now?
/// (The worker holds its task's while the task runs.)
bool holds_segment(pid_t pid = 0) {
    const std::string dir = "/proc/" + (pid ? std::to_string(pid) : std::string("self")) + "/fd/";
    for (int fd = 0; fd < 1024; ++fd) {
        char link[256] = {};
        if (::readlink((dir + std::to_string(fd)).c_str(), link, sizeof link - 1) > 0 &&
            std::string(link).find("memfd:corun-frame") != std::string::npos)
            return true;
    }
    return false;
}

/// Mappings of frames' segments in `pid` (none may outlive a transfer).
int segment_maps(pid_t pid) {
    std::ifstream maps("/proc/" + std::to_string(pid) + "/maps");
    int n = 0;
    for (std::string line; std::getline(maps, line);)
        n += line.find("memfd:corun-frame") != std::string::npos;
    return n;
}

/// Every byte +1, so that what comes back was made by the worker from what it got.
std::tuple<std::string, bool> shifted(const std::string& s) {
    std::string out(s);
    for (char& c : out) c = static_cast<char>(c + 1);
    return {std::move(out), holds_segment()};
}

std::string unshift(std::string s) {
    for (char& c : s) c = static_cast<char>(c - 1);
    return s;
}

struct triple {
    double x, y, z;
    bool operator==(const triple&) const = default;
};

std::vector<triple> reversed(std::vector<triple> v) {
    std::reverse(v.begin(), v.end());
    return v;
}

std::size_t string_size(const std::string& s) {
    return s.size();
}

std::string make_string(std::size_t n) {
    return std::string(n, 'r');
}

/// Waits up to `limit` for `done()`, the event loop running meanwhile.
template <class F>
awaitable<bool> soon(F done, std::chrono::milliseconds limit = 5000ms) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (!done()) {
        if (std::chrono::steady_clock::now() > deadline) co_return false;
        boost::asio::steady_timer wait(co_await corun::this_executor(), 5ms);
        co_await wait.async_wait(corun::use_awaitable);
    }
    co_return true;
}

/// The pid of a one-worker pool's worker, once it has one (after a kill,
/// its replacement takes a moment).
awaitable<int> the_worker(corun::process_pool& pool) {
    for (;;) {
        if (auto pids = pool.worker_pids(); !pids.empty()) co_return pids.front();
        boost::asio::steady_timer wait(co_await corun::this_executor(), 5ms);
        co_await wait.async_wait(corun::use_awaitable);
    }
}

}  // namespace

TEST_CASE("strings of every size around the threshold cross intact both ways, large ones in shared memory",
          "[large]") {
    block_on_within(60s, []() -> awaitable<void> {
        corun::process_pool pool{co_await corun::this_executor(), {.workers = 1}};
        for (std::size_t n : sizes) {
            INFO("size " << n);
            const std::string sent = pattern(n, static_cast<int>(n));
            auto [back, shared] = co_await pool.submit(shifted, sent);
            CHECK(shared == (n >= threshold));
            CHECK(back.size() == n);
            CHECK(unshift(std::move(back)) == sent);
        }
    }());
}

TEST_CASE("vectors, several blocks in one frame, cereal types and map chunks cross intact", "[large]") {
    block_on_within(60s, []() -> awaitable<void> {
        corun::process_pool pool{co_await corun::this_executor(), {.workers = 2}};
        // 24-byte elements, misaligned for nothing: a window boundary never splits one.
        std::vector<triple> points(3 * threshold / sizeof(triple) + 7);
        for (std::size_t i = 0; i < points.size(); ++i) points[i] = {double(i), -double(i), 0.5 * double(i)};
        auto back = co_await pool.submit(reversed, points);
        std::reverse(back.begin(), back.end());
        CHECK(back == points);

        // Two large arguments and a small one: two blocks in one segment.
        const std::string a = pattern(threshold + 11, 1), b = pattern(2 * threshold, 2);
        const std::string joined = co_await pool.submit(
            [](const std::string& x, int mid, const std::string& y) { return x + std::to_string(mid) + y; },
            a, 42, b);
        CHECK(joined == a + "42" + b);

        // A vector of large strings, each a block; and a cereal type holding one.
        std::vector<std::string> many = {pattern(threshold, 3), "small", pattern(threshold * 2 + 1, 4)};
        const auto many_back = co_await pool.submit([](std::vector<std::string> v) { return v; }, many);
        CHECK(many_back == many);
        std::map<int, std::string> table = {{1, pattern(2 * threshold, 5)}, {2, "two"}};
        const auto table_back = co_await pool.submit([](std::map<int, std::string> m) { return m; }, table);
        CHECK(table_back == table);

        // map over large items: chunks with several blocks each.
        std::vector<std::string> items;
        for (int i = 0; i < 6; ++i) items.push_back(pattern(threshold + static_cast<std::size_t>(i), i));
        const auto lengths = co_await pool.map(string_size, items, {.chunksize = 2});
        CHECK(lengths == std::vector<std::size_t>{threshold, threshold + 1, threshold + 2, threshold + 3,
                                                  threshold + 4, threshold + 5});
        // And large results out of map.
        const std::vector<std::size_t> lengths_wanted = {threshold, 5, 2 * threshold};
        const auto made = co_await pool.map(make_string, lengths_wanted);
        REQUIRE(made.size() == 3);
        CHECK(made[0] == std::string(threshold, 'r'));
        CHECK(made[1] == "rrrrr");
        CHECK(made[2] == std::string(2 * threshold, 'r'));
    }());
}

TEST_CASE("a large result costs the parent the value once, not twice", "[large]") {
#ifdef __SANITIZE_ADDRESS__
    WARN("not under AddressSanitizer: its allocator keeps freed memory in quarantine");
    return;
#endif
    block_on_within(60s, []() -> awaitable<void> {
        corun::process_pool pool{co_await corun::this_executor(), {.workers = 1}};
        const std::size_t n = std::size_t(256) << 20;
        reset_peak_rss();
        const long start = status_kib("VmHWM");
        const std::string big = co_await pool.submit(make_string, n);
        const long above = status_kib("VmHWM") - start;
        CHECK(big.size() == n);
        INFO("the parent's peak rose by " << above / 1024 << " MiB for a " << (n >> 20) << " MiB result");
        CHECK(static_cast<std::size_t>(above) * 1024 < n + n / 5);
    }());
}

TEST_CASE("a worker killed in the middle of a transfer leaks no segment, in either process", "[large]") {
    block_on_within(90s, []() -> awaitable<void> {
        auto ex = co_await corun::this_executor();
        corun::process_pool pool{ex, {.workers = 1}};
        const std::string big = pattern(std::size_t(192) << 20, 9);
        co_await pool.submit(string_size,
                             std::string("warm"));  // the pool's own descriptors are all open now
        const int fds_before = open_fds();
        int crashed = 0;
        for (int round = 0; round < 8; ++round) {
            const int pid = co_await the_worker(pool);
            // Killed while it takes in a large argument, or while it writes a large result.
            boost::asio::steady_timer timer(ex, std::chrono::milliseconds(5 + 15 * (round / 2)));
            timer.async_wait([pid](boost::system::error_code) { ::kill(pid, SIGKILL); });
            try {
                if (round % 2 == 0)
                    co_await pool.submit(string_size, big);
                else
                    co_await pool.submit(make_string, big.size());
            } catch (const corun::worker_crashed&) {
                ++crashed;
            }
            timer.cancel();
            CHECK(co_await soon([&] { return !alive(pid); }));
        }
        CHECK(crashed > 0);         // the kills did land mid-transfer
        co_await the_worker(pool);  // its replacement's descriptors are counted in fds_before
        CHECK(open_fds() == fds_before);
        CHECK(segment_maps(::getpid()) == 0);
        CHECK_FALSE(holds_segment(::getpid()));
        // Nor does the fork server or the new worker hold anything.
        for (int child : children_of_this_process()) {
            CHECK_FALSE(holds_segment(child));
            for (int grandchild : children_of(child)) CHECK_FALSE(holds_segment(grandchild));
        }
        // And the pool works on.
        CHECK(co_await pool.submit(string_size, big) == big.size());
    }());
}

TEST_CASE("max_frame_size counts a value's shared bytes, where the value is made", "[large]") {
    block_on_within(30s, []() -> awaitable<void> {
        corun::process_pool pool{co_await corun::this_executor(),
                                 {.workers = 1, .max_frame_size = 2 * threshold}};
        const int pid = pool.worker_pids().at(0);
        const auto too_big = corun_test::thrown_within<corun::value_too_large>(10s, [&]() -> awaitable<void> {
            co_await pool.submit(string_size, std::string(3 * threshold, 'a'));
        }());
        CHECK(too_big.limit() == 2 * threshold);
        CHECK(too_big.size() > 3 * threshold);
        try {
            co_await pool.submit(make_string, 3 * threshold);
            FAIL("a result over the limit crossed");
        } catch (const corun::value_too_large& e) {
            CHECK_THAT(e.what(), Catch::Contains("result"));
        }
        CHECK(co_await pool.submit(string_size, std::string(threshold + 1, 'a')) == threshold + 1);
        CHECK(pool.worker_pids() == std::vector<int>{pid});
    }());
}

TEST_CASE("memory_limit applies to a large argument: bad_alloc for the task, the worker goes on", "[large]") {
#ifdef __SANITIZE_ADDRESS__
    WARN("not under AddressSanitizer: its shadow memory needs more address space than any RLIMIT_AS allows");
    return;
#endif
    block_on_within(30s, []() -> awaitable<void> {
        corun::process_pool pool{co_await corun::this_executor(),
                                 {.workers = 1, .memory_limit = std::size_t(64) << 20}};
        const int pid = pool.worker_pids().at(0);
        CHECK_THROWS_AS(co_await pool.submit(string_size, std::string(std::size_t(128) << 20, 'm')),
                        std::bad_alloc);
        CHECK(co_await pool.submit(string_size, std::string(std::size_t(8) << 20, 'm')) == std::size_t(8)
                                                                                               << 20);
        CHECK(pool.worker_pids() == std::vector<int>{pid});
    }());
}

namespace {

/// In a task: the sequence number its worker's board says is running (the
/// id the parent expects on the answer).
std::uint64_t running_task_id() {
    std::ifstream maps("/proc/self/maps");
    for (std::string line; std::getline(maps, line);) {
        if (line.find("memfd:corun-board") == std::string::npos) continue;
        auto* board = reinterpret_cast<corun::detail::worker_board*>(std::stoull(line, nullptr, 16));
        // The slots follow `ready` and `exit_reason`: (seq << 3) | state.
        const auto* slots = reinterpret_cast<const std::atomic<std::uint64_t>*>(&board->exit_reason + 1);
        for (std::size_t i = 0; i < corun::detail::worker_board::slots; ++i) {
            const std::uint64_t v = slots[i].load();
            if ((v & 7) == corun::detail::worker_board::started) return v >> 3;
        }
    }
    return 0;
}

/// In a task: answers the running task ahead of its worker, with a
/// std::string result whose one block lies in a segment, and passes `fd`
/// as that segment.
void forge_answer(int fd) {
    char payload[8 + 1 + 8];
    const std::uint64_t n = threshold, offset = 0;
    std::memcpy(payload, &n, 8);
    payload[8] = 1;  // in the segment
    std::memcpy(payload + 9, &offset, 8);
    const corun::detail::frame_header h{sizeof payload, corun::detail::result_frame,
                                        corun::detail::has_segment, running_task_id()};
    std::string bytes(reinterpret_cast<const char*>(&h), sizeof h);
    bytes.append(payload, sizeof payload);
    const iovec whole{bytes.data(), bytes.size()};
    (void)corun::detail::send_frame_bytes(worker_channel(), &whole, 1, fd);
}

}  // namespace

TEST_CASE("a worker passing a bad segment fails its task or its worker; the parent neither faults nor leaks",
          "[large]") {
    // Forged answers to the running task: an unsealed memfd, a pipe (both
    // break the protocol: the worker is killed), and a sealed memfd too
    // small for the block it names (reading past its end would be SIGBUS in
    // a parent that mapped it blindly: the task fails instead).
    block_on_within(30s, []() -> awaitable<void> {
        corun::process_pool pool{co_await corun::this_executor(), {.workers = 1}};
        co_await pool.submit(string_size, std::string("warm"));
        const int fds_before = open_fds();
        for (int variant : {0, 1, 2}) {
            INFO("variant " << variant);
            const int pid = pool.worker_pids().at(0);
            try {
                co_await pool.submit(
                    [](int which) -> std::string {
                        int fd = -1;
                        if (which == 1) {
                            int p[2];
                            if (::pipe(p) == 0) fd = p[0];
                        } else {
                            fd = ::memfd_create("corun-frame", MFD_ALLOW_SEALING);
                            if (::ftruncate(fd, 4096) != 0) return "no memfd";
                            if (which == 2)
                                ::fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE);
                        }
                        forge_answer(fd);
                        return "forged";
                    },
                    variant);
                FAIL("the forged answer went unnoticed");
            } catch (const corun::worker_crashed& e) {
                CHECK(variant != 2);
                CHECK_THAT(e.what(), Catch::Contains("shared segment"));
            } catch (const std::runtime_error& e) {
                CHECK(variant == 2);
                CHECK_THAT(e.what(), Catch::Contains("beyond the frame's shared segment"));
            }
            // Its real answer then names a task it no longer holds: it goes too.
            CHECK(co_await soon([&] { return !alive(pid); }));
            CHECK(co_await pool.submit(string_size, std::string("still here")) == 10u);
        }
        CHECK(open_fds() == fds_before);
        CHECK(segment_maps(::getpid()) == 0);
    }());
}

/// Runs `body` with this process out of descriptors: the limit lowered to
/// what is open plus a few, and those few taken.
template <class F>
awaitable<void> without_descriptors(F body) {
    rlimit saved{};
    ::getrlimit(RLIMIT_NOFILE, &saved);
    rlimit tight = saved;
    tight.rlim_cur = static_cast<rlim_t>(open_fds() + 8);
    ::setrlimit(RLIMIT_NOFILE, &tight);
    std::vector<int> filler;
    for (int fd; (fd = ::dup(0)) >= 0;) filler.push_back(fd);
    std::exception_ptr failure;
    try {
        co_await body();
    } catch (...) {
        failure = std::current_exception();
    }
    for (int fd : filler) ::close(fd);
    ::setrlimit(RLIMIT_NOFILE, &saved);
    if (failure) std::rethrow_exception(failure);
}

TEST_CASE("out of descriptors in the parent: large values cross inline, or fail alone with EMFILE",
          "[large]") {
    block_on_within(30s, []() -> awaitable<void> {
        corun::process_pool pool{co_await corun::this_executor(), {.workers = 1}};
        co_await pool.submit(string_size, std::string("warm"));
        const int pid = pool.worker_pids().at(0);
        const int fds_before = open_fds();
        const std::string big = pattern(2 * threshold, 7);
        co_await without_descriptors([&]() -> awaitable<void> {
            // Its argument cannot have a segment: its answer is asked inline.
            auto [back, shared] = co_await pool.submit(shifted, big);
            CHECK_FALSE(shared);
            CHECK(unshift(std::move(back)) == big);
            // A small task's large result comes with a descriptor there is no
            // room for: that task fails, saying so, and nothing else does.
            try {
                co_await pool.submit(make_string, 2 * threshold);
                FAIL("a result whose descriptor was lost arrived");
            } catch (const std::system_error& e) {
                CHECK(e.code().value() == EMFILE);
                CHECK_THAT(e.what(), Catch::Contains("descriptors"));
            }
        });
        CHECK(co_await pool.submit(make_string, 2 * threshold) == std::string(2 * threshold, 'r'));
        CHECK(pool.worker_pids() == std::vector<int>{pid});
        CHECK(open_fds() == fds_before);
    }());
}

TEST_CASE("out of descriptors in a worker: its task fails with EMFILE, its results come inline", "[large]") {
    block_on_within(30s, []() -> awaitable<void> {
        corun::process_pool pool{co_await corun::this_executor(), {.workers = 1}};
        const int pid = pool.worker_pids().at(0);
        // A task that leaves its worker with no descriptor free.
        co_await pool.submit([] {
            static std::vector<int> held;
            for (int fd; (fd = ::dup(0)) >= 0;) held.push_back(fd);
            return held.size();
        });
        try {
            co_await pool.submit(string_size, pattern(2 * threshold, 3));
            FAIL("an argument whose descriptor was lost arrived");
        } catch (const std::system_error& e) {
            CHECK(e.code().value() == EMFILE);
            CHECK_THAT(e.what(), Catch::Contains("worker is out of descriptors"));
        }
        // Its own large result cannot have a segment: it comes inline.
        CHECK(co_await pool.submit(make_string, 2 * threshold) == std::string(2 * threshold, 'r'));
        CHECK(pool.worker_pids() == std::vector<int>{pid});
    }());
}

namespace {

double halve(double x) {
    return x / 2;
}

}  // namespace

TEST_CASE("map of raw values fills its output in place: any chunk size, contiguous input or not", "[large]") {
    block_on_within(60s, []() -> awaitable<void> {
        corun::process_pool pool{co_await corun::this_executor(), {.workers = 2}};
        const std::size_t n = 1'500'000;  // 12 MB of doubles either way
        std::vector<double> input(n);
        for (std::size_t i = 0; i < n; ++i) input[i] = static_cast<double>(i);
        // Chunks of every kind: small and inline; larger than the threshold,
        // so in the segment both ways; one item.
        for (std::size_t chunksize :
             {std::size_t(0), std::size_t(1000), 4 * threshold / sizeof(double), std::size_t(1)}) {
            INFO("chunksize " << chunksize);
            if (chunksize == 1) {  // a million tasks would take a while: a short input
                const std::vector<double> few(input.begin(), input.begin() + 1000);
                const auto halves = co_await pool.map(halve, few, {.chunksize = 1});
                REQUIRE(halves.size() == few.size());
                for (std::size_t i = 0; i < few.size(); ++i) CHECK(halves[i] == static_cast<double>(i) / 2);
                continue;
            }
            const auto from_vector = co_await pool.map(halve, input, {.chunksize = chunksize});
            REQUIRE(from_vector.size() == n);
            bool all = true;
            for (std::size_t i = 0; i < n; ++i) all = all && from_vector[i] == static_cast<double>(i) / 2;
            CHECK(all);
            // corun::range is random-access but not contiguous: items are written one by one.
            const auto from_range = co_await pool.map(square, corun::range(static_cast<std::int64_t>(n)),
                                                      {.chunksize = chunksize});
            REQUIRE(from_range.size() == n);
            CHECK(from_range[12345] == 12345L * 12345L);
            CHECK(from_range.back() == static_cast<long>(n - 1) * static_cast<long>(n - 1));
        }
    }());
}

namespace {

std::string tag_of(const std::string& s) {
    if (s.size() < threshold) usleep(200'000);  // the write behind it waits for room meanwhile
    return std::to_string(s.size()) + ":" + (s.empty() ? ' ' : s[0]);
}

}  // namespace

TEST_CASE("frames with segments queued behind a full socket each keep their own descriptor", "[large]") {
    block_on_within(60s, []() -> awaitable<void> {
        corun::process_pool pool{co_await corun::this_executor(), {.workers = 1, .prefetch = 32}};
        // An inline frame larger than the socket's buffer whose task takes a
        // while, then ten frames with segments: they are written together,
        // once the socket has room.
        std::vector<std::string> items = {std::string(threshold - 100, 'i')};
        for (int i = 0; i < 10; ++i)
            items.push_back(
                std::string(2 * threshold + static_cast<std::size_t>(i) * 4096, static_cast<char>('a' + i)));
        std::vector<std::string> wanted;
        for (auto& item : items) wanted.push_back(std::to_string(item.size()) + ":" + item[0]);
        for (int round = 0; round < 3; ++round) {
            INFO("round " << round);
            CHECK(co_await pool.map(tag_of, items, {.chunksize = 1}) == wanted);
        }
    }());
}

TEST_CASE(
    "a map of more large items than segments may be open works, the process far from its descriptor limit",
    "[large]") {
    block_on_within(120s, []() -> awaitable<void> {
        corun::process_pool pool{co_await corun::this_executor(), {.workers = 2}};
        rlimit saved{};
        ::getrlimit(RLIMIT_NOFILE, &saved);
        rlimit tight = saved;
        tight.rlim_cur = static_cast<rlim_t>(open_fds() + corun::detail::max_open_segments + 40);
        ::setrlimit(RLIMIT_NOFILE, &tight);
        std::vector<std::string> items;
        for (int i = 0; i < 300; ++i)
            items.push_back(std::string(threshold + static_cast<std::size_t>(i), 'x'));
        std::exception_ptr failure;
        std::vector<std::size_t> sizes_back;
        try {
            sizes_back = co_await pool.map(string_size, items, {.chunksize = 1});
        } catch (...) {
            failure = std::current_exception();
        }
        ::setrlimit(RLIMIT_NOFILE, &saved);
        if (failure) std::rethrow_exception(failure);
        REQUIRE(sizes_back.size() == items.size());
        for (std::size_t i = 0; i < items.size(); ++i) CHECK(sizes_back[i] == threshold + i);
    }());
}

TEST_CASE("a worker sending descriptors that belong to no frame is killed before it fills the parent's table",
          "[large]") {
    block_on_within(30s, []() -> awaitable<void> {
        corun::process_pool pool{co_await corun::this_executor(), {.workers = 1}};
        co_await pool.submit(string_size, std::string("warm"));
        const int fds_before = open_fds();
        try {
            co_await pool.submit([] {
                // The start of an answer to the running task, long, then many
                // messages each carrying a descriptor.
                const corun::detail::frame_header h{std::uint64_t(1) << 20, corun::detail::result_frame, 0,
                                                    running_task_id()};
                const iovec head{const_cast<corun::detail::frame_header*>(&h), sizeof h};
                (void)corun::detail::send_frame_bytes(worker_channel(), &head, 1, -1);
                const int null = ::open("/dev/null", O_RDONLY);
                char byte = 0;
                const iovec one{&byte, 1};
                for (int i = 0; i < 500; ++i)
                    (void)corun::detail::send_frame_bytes(worker_channel(), &one, 1, null);
                usleep(5'000'000);
                return 0;
            });
            FAIL("the worker's descriptors went unnoticed");
        } catch (const corun::worker_crashed& e) {
            CHECK_THAT(e.what(), Catch::Contains("descriptors"));
        }
        CHECK(open_fds() <= fds_before + 1);  // its replacement may not be there yet: not more
        CHECK(co_await pool.submit(string_size, std::string("after")) == 5u);
    }());
}

TEST_CASE("descriptors refused by the kernel (ETOOMANYREFS) fail only their tasks, both ways", "[large]") {
    if (::geteuid() != 0) {
        WARN("skipped: needs root, to run the scenario as an unprivileged user");
        return;
    }
    // The kernel refuses to put more descriptors in flight than a user's
    // RLIMIT_NOFILE, unless the user has CAP_SYS_RESOURCE: the scenario
    // runs in a child as nobody, with 1024 descriptors and 1100 in flight.
    const pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) {
        int code = 1;
        if (::setgroups(0, nullptr) == 0 && ::setresgid(65534, 65534, 65534) == 0 &&
            ::setresuid(65534, 65534, 65534) == 0) {
            const rlimit files{1024, 1024};
            ::setrlimit(RLIMIT_NOFILE, &files);
            code = 2;
            try {
                block_on_within(30s, []() -> awaitable<void> {
                    corun::process_pool pool{co_await corun::this_executor(), {.workers = 1}};
                    int pair[2];
                    if (::socketpair(AF_UNIX, SOCK_STREAM, 0, pair) != 0)
                        throw std::runtime_error("socketpair");
                    // 200 descriptors a message (the most is 253), six messages.
                    const int null = ::open("/dev/null", O_RDONLY);
                    std::vector<int> many(200, null);
                    char byte = 0;
                    iovec one{&byte, 1};
                    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 200)] = {};
                    msghdr msg{};
                    msg.msg_iov = &one;
                    msg.msg_iovlen = 1;
                    msg.msg_control = control;
                    msg.msg_controllen = sizeof control;
                    cmsghdr* c = CMSG_FIRSTHDR(&msg);
                    c->cmsg_level = SOL_SOCKET;
                    c->cmsg_type = SCM_RIGHTS;
                    c->cmsg_len = CMSG_LEN(sizeof(int) * 200);
                    std::memcpy(CMSG_DATA(c), many.data(), sizeof(int) * 200);
                    int sent = 0;
                    for (int i = 0; i < 6; ++i) sent += ::sendmsg(pair[0], &msg, MSG_DONTWAIT) == 1;
                    if (sent != 6)
                        throw std::runtime_error("only " + std::to_string(sent) + " messages in flight");
                    int refused = 0;
                    for (bool result : {false, true}) {
                        try {
                            if (result)
                                co_await pool.submit(make_string, 2 * threshold);
                            else
                                co_await pool.submit(string_size, std::string(2 * threshold, 's'));
                        } catch (const std::system_error& e) {
                            refused += e.code().value() == ETOOMANYREFS;
                        }
                    }
                    ::close(pair[0]);
                    ::close(pair[1]);
                    // Nothing in flight any more: both ways work again.
                    const bool after =
                        co_await pool.submit(string_size, std::string(2 * threshold, 's')) == 2 * threshold &&
                        (co_await pool.submit(make_string, 2 * threshold)).size() == 2 * threshold;
                    if (refused != 2 || !after)
                        throw std::runtime_error("refused " + std::to_string(refused));
                }());
                code = 0;
            } catch (const std::exception& e) {
                std::fprintf(stderr, "scenario: %s\n", e.what());
            }
        }
        std::fflush(stderr);
        ::_exit(code);
    }
    int status = 0;
    REQUIRE(::waitpid(child, &status, 0) == child);
    REQUIRE(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
}
