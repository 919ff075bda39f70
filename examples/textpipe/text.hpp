// textpipe — the text stages of corun-textpipe: a synthetic English-like
// corpus, stop-word removal, Snowball stemming, dedupe and word counts.
//
// Every stage is a plain function of values (std::string, std::vector of
// them), so it runs the same inline, on a thread_pool or in process_pool
// workers, and the three ways of running it can be compared.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

namespace textpipe {

/// Document `index` of a deterministic synthetic corpus: about 200 words of
/// English-looking sentences (stop words, real words and their inflected
/// forms, Zipf-like frequencies). The same index gives the same text on every
/// machine; every 20th document (index % 20 == 19) repeats an earlier one
/// exactly, so a dedupe stage has work to do.
std::string make_document(std::uint64_t index);

/// Splits `doc` into words (runs of letters, digits, bytes of UTF-8
/// sequences and inner apostrophes), lowercases ASCII letters and drops
/// English stop words ("the", "and", "of" …).
std::vector<std::string> remove_stop_words(const std::string& doc);

/// Each word through the Snowball English stemmer (libstemmer, UTF-8).
/// One stemmer per thread, made on first use, so it is safe on a thread pool
/// and in worker processes. Throws std::bad_alloc if libstemmer runs out of memory.
std::vector<std::string> stem(const std::vector<std::string>& words);
std::string stem_word(std::string_view word);

/// A serial stage: keeps the hashes of the word lists it has seen and drops
/// a list seen before (std::nullopt).
struct deduper {
    std::unordered_set<std::uint64_t> seen;
    std::optional<std::vector<std::string>> operator()(std::vector<std::string> words);
};

/// The sink: how often each word occurs.
struct word_counts {
    std::unordered_map<std::string, std::uint64_t> counts;
    void add(const std::vector<std::string>& words);
    /// The n most frequent words, most frequent first; ties in alphabetical order.
    std::vector<std::pair<std::string, std::uint64_t>> top(std::size_t n) const;
};

/// The process's peak resident set size (VmHWM of /proc/self/status) in KiB; 0 if unknown.
std::size_t peak_rss_kib();
/// Returns freed heap memory to the kernel (malloc_trim), then resets the peak
/// to the current resident set size (writes "5" to /proc/self/clear_refs);
/// the reset does nothing where the kernel does not allow it.
void reset_peak_rss();

}  // namespace textpipe
