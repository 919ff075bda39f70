// corun-tbb-pipeline — oneTBB's parallel_pipeline running the text pipeline of
// `corun-bench pipeline` with the same stage functions, for bench/compare:
// parallel filters for stop words and stemming, serial_in_order ones for
// dedupe and counting, over the same synthetic corpus (made before timing).
//
// usage: corun-tbb-pipeline [--docs N] [--threads N] [--repeat N]
// Prints one JSON line: docs/s and wall time of the best run.
#include <oneapi/tbb/parallel_pipeline.h>
#include <oneapi/tbb/task_arena.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "text.hpp"

namespace {

struct run_figures {
    double wall_s = 0;
    std::uint64_t kept = 0;
    std::uint64_t words = 0;
};

run_figures run_once(const std::vector<std::string>& corpus, std::size_t tokens) {
    textpipe::deduper dedupe;
    textpipe::word_counts counts;
    run_figures r;
    std::size_t next = 0;
    const auto t0 = std::chrono::steady_clock::now();
    tbb::parallel_pipeline(
        tokens,
        tbb::make_filter<void, std::size_t>(tbb::filter_mode::serial_in_order,
                                            [&](tbb::flow_control& fc) -> std::size_t {
                                                if (next == corpus.size()) fc.stop();
                                                return next++;
                                            }) &
            tbb::make_filter<std::size_t, std::vector<std::string>>(
                tbb::filter_mode::parallel,
                [&](std::size_t i) { return textpipe::remove_stop_words(corpus[i]); }) &
            tbb::make_filter<std::vector<std::string>, std::vector<std::string>>(
                tbb::filter_mode::parallel,
                [](const std::vector<std::string>& words) { return textpipe::stem(words); }) &
            tbb::make_filter<std::vector<std::string>, std::optional<std::vector<std::string>>>(
                tbb::filter_mode::serial_in_order,
                [&](std::vector<std::string> words) { return dedupe(std::move(words)); }) &
            tbb::make_filter<std::optional<std::vector<std::string>>, void>(
                tbb::filter_mode::serial_in_order, [&](const std::optional<std::vector<std::string>>& words) {
                    if (!words) return;
                    counts.add(*words);
                    ++r.kept;
                    r.words += words->size();
                }));
    r.wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return r;
}

[[noreturn]] void usage() {
    std::fprintf(stderr, "usage: corun-tbb-pipeline [--docs N] [--threads N] [--repeat N]\n");
    std::exit(2);
}

std::size_t positive(const char* text) {
    char* end = nullptr;
    const unsigned long long v = std::strtoull(text, &end, 10);
    if (end == text || *end || v == 0) usage();
    return static_cast<std::size_t>(v);
}

}  // namespace

int main(int argc, char** argv) {
    std::size_t docs = 10'000;
    std::size_t threads = std::max(1u, std::thread::hardware_concurrency());
    std::size_t repeat = 5;
    for (int i = 1; i < argc; ++i) {
        if (std::strcmp(argv[i], "--json") == 0) continue;  // the output is JSON anyway
        if (i + 1 >= argc) usage();
        if (std::strcmp(argv[i], "--docs") == 0) {
            docs = positive(argv[++i]);
        } else if (std::strcmp(argv[i], "--threads") == 0) {
            threads = positive(argv[++i]);
        } else if (std::strcmp(argv[i], "--repeat") == 0) {
            repeat = positive(argv[++i]);
        } else {
            usage();
        }
    }
    // As many items in flight as corun's pool stages allow by default: two per worker and stage.
    const std::size_t tokens = 4 * threads;

    std::vector<std::string> corpus;
    corpus.reserve(docs);
    for (std::size_t i = 0; i < docs; ++i) corpus.push_back(textpipe::make_document(i));

    tbb::task_arena arena(static_cast<int>(threads));
    run_figures best;
    for (std::size_t i = 0; i < repeat; ++i) {
        run_figures r;
        arena.execute([&] { r = run_once(corpus, tokens); });
        if (i == 0 || r.wall_s < best.wall_s) best = r;
    }
    std::printf(
        "{\"case\":\"tbb_pipeline\",\"docs\":%zu,\"threads\":%zu,\"tokens\":%zu,\"repeat\":%zu,"
        "\"kept\":%llu,\"words\":%llu,\"docs_per_s\":%.6g,\"wall_s\":%.6g}\n",
        docs, threads, tokens, repeat, static_cast<unsigned long long>(best.kept),
        static_cast<unsigned long long>(best.words), static_cast<double>(docs) / best.wall_s, best.wall_s);
    return 0;
}
