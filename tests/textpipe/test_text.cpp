#include "text.hpp"

#include <catch2/catch.hpp>

#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

using words = std::vector<std::string>;

// Pairs from the sample vocabulary published with Snowball's English
// ("Porter2") algorithm, including its exceptional forms (skies, dying, news,
// gently …) and the words left alone after step 1a (succeeding).
TEST_CASE("stemming matches Snowball's English output", "[textpipe]") {
    const std::vector<std::pair<std::string, std::string>> known = {
        {"caresses", "caress"},    {"ponies", "poni"},         {"ties", "tie"},
        {"cats", "cat"},           {"running", "run"},         {"generously", "generous"},
        {"consigned", "consign"},  {"consignment", "consign"}, {"knightly", "knight"},
        {"generation", "generat"}, {"happy", "happi"},         {"hopefulness", "hope"},
        {"skies", "sky"},          {"dying", "die"},           {"lying", "lie"},
        {"news", "news"},          {"gently", "gentl"},        {"ugly", "ugli"},
        {"only", "onli"},          {"succeeding", "succeed"},  {"atlas", "atlas"},
        {"university", "univers"},
    };
    for (const auto& [word, stemmed] : known) {
        INFO(word);
        CHECK(textpipe::stem_word(word) == stemmed);
    }
    CHECK(textpipe::stem({"running", "ponies", "news"}) == words{"run", "poni", "news"});
    CHECK(textpipe::stem({}).empty());
}

TEST_CASE("each thread stems with a stemmer of its own", "[textpipe]") {
    std::vector<words> results(4);
    std::vector<std::thread> threads;
    for (auto& r : results)
        threads.emplace_back([&r] {
            for (int i = 0; i < 2000; ++i) r = textpipe::stem({"generously", "consignment", "skies"});
        });
    for (auto& t : threads) t.join();
    for (const auto& r : results) CHECK(r == words{"generous", "consign", "sky"});
}

TEST_CASE("remove_stop_words splits, lowercases and drops stop words", "[textpipe]") {
    CHECK(textpipe::remove_stop_words("The Cats and THE dogs, of the Village.") ==
          words{"cats", "dogs", "village"});
    CHECK(textpipe::remove_stop_words("Don't worry: it's a trader's 3 boats!") ==
          words{"worry", "trader's", "3", "boats"});
    CHECK(textpipe::remove_stop_words("  'quoted'  --  café ") == words{"quoted", "café"});
    CHECK(textpipe::remove_stop_words("").empty());
    CHECK(textpipe::remove_stop_words("the and of to in it").empty());
}

TEST_CASE("make_document is deterministic English-like text of about 200 words", "[textpipe]") {
    for (std::uint64_t i : {0u, 1u, 7u, 1000u, 123457u}) {
        const std::string doc = textpipe::make_document(i);
        CHECK(doc == textpipe::make_document(i));
        std::size_t n = 0;
        bool in_word = false;
        for (const char c : doc) {
            const bool letter = c != ' ' && c != '\n';
            n += letter && !in_word;
            in_word = letter;
        }
        CHECK(n >= 150);
        CHECK(n <= 250);
        // Stop words make up a good part of it, as in English.
        const std::size_t kept = textpipe::remove_stop_words(doc).size();
        CHECK(kept < n * 8 / 10);
        CHECK(kept > n * 4 / 10);
    }
    CHECK(textpipe::make_document(0) != textpipe::make_document(1));
}

TEST_CASE("every 20th document repeats an earlier one exactly, and only those", "[textpipe]") {
    std::set<std::string> seen;
    for (std::uint64_t i = 0; i < 200; ++i) {
        const bool new_text = seen.insert(textpipe::make_document(i)).second;
        INFO(i);
        CHECK(new_text == (i % 20 != 19));
    }
}

TEST_CASE("deduper drops word lists it has seen before", "[textpipe]") {
    textpipe::deduper dedupe;
    CHECK(dedupe({"a", "b"}) == words{"a", "b"});
    CHECK(dedupe({"ab"}) == words{"ab"});  // word boundaries count
    CHECK_FALSE(dedupe({"a", "b"}).has_value());
    CHECK(dedupe({}) == words{});
    CHECK_FALSE(dedupe({}).has_value());

    textpipe::deduper corpus;
    std::size_t kept = 0;
    for (std::uint64_t i = 0; i < 400; ++i)
        kept += corpus(textpipe::stem(textpipe::remove_stop_words(textpipe::make_document(i)))).has_value();
    CHECK(kept == 380);
}

TEST_CASE("word_counts counts and ranks by count, then alphabetically", "[textpipe]") {
    textpipe::word_counts wc;
    wc.add({"b", "a", "c", "a"});
    wc.add({"b", "d"});
    CHECK(wc.counts.at("a") == 2);
    using top_type = std::vector<std::pair<std::string, std::uint64_t>>;
    CHECK(wc.top(3) == top_type{{"a", 2}, {"b", 2}, {"c", 1}});
    CHECK(wc.top(10).size() == 4);
    CHECK(textpipe::word_counts{}.top(5).empty());
}

TEST_CASE("peak RSS is read from /proc and can be reset", "[textpipe]") {
    const std::size_t before = textpipe::peak_rss_kib();
    CHECK(before > 0);
    {
        std::vector<char> big(64 << 20, 1);  // 64 MiB, touched
        volatile char* keep = big.data();    // read below: the allocation must happen
        CHECK(textpipe::peak_rss_kib() >= before + (60 << 10));
        CHECK(keep[big.size() - 1] == 1);
    }
    textpipe::reset_peak_rss();
    // Where the kernel allows the reset, the peak falls back near the current size.
    CHECK(textpipe::peak_rss_kib() > 0);
}
