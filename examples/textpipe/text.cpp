#include "text.hpp"

#include <libstemmer.h>
#include <malloc.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <new>
#include <string>

namespace textpipe {

namespace {

// ---- the vocabulary --------------------------------------------------------

// Words the stop-word stage drops. Written here rather than read from a file
// so the corpus and the stage agree wherever the program runs.
constexpr std::string_view stop_words[] = {
    "a",       "about",      "above",    "after",      "again",   "against",  "all",     "am",
    "an",      "and",        "any",      "are",        "as",      "at",       "be",      "because",
    "been",    "before",     "being",    "below",      "between", "both",     "but",     "by",
    "can",     "could",      "did",      "do",         "does",    "doing",    "don't",   "down",
    "during",  "each",       "few",      "for",        "from",    "further",  "had",     "has",
    "have",    "having",     "he",       "her",        "here",    "hers",     "herself", "him",
    "himself", "his",        "how",      "i",          "if",      "in",       "into",    "is",
    "isn't",   "it",         "it's",     "its",        "itself",  "just",     "me",      "more",
    "most",    "my",         "myself",   "no",         "nor",     "not",      "now",     "of",
    "off",     "on",         "once",     "only",       "or",      "other",    "ought",   "our",
    "ours",    "ourselves",  "out",      "over",       "own",     "same",     "she",     "should",
    "so",      "some",       "such",     "than",       "that",    "the",      "their",   "theirs",
    "them",    "themselves", "then",     "there",      "these",   "they",     "this",    "those",
    "through", "to",         "too",      "under",      "until",   "up",       "very",    "was",
    "wasn't",  "we",         "were",     "what",       "when",    "where",    "which",   "while",
    "who",     "whom",       "why",      "will",       "with",    "won't",    "would",   "you",
    "your",    "yours",      "yourself", "yourselves", "also",    "may",      "might",   "must",
    "shall",   "upon",       "yet",      "whether",    "though",  "although", "since",   "within",
};

// Content words, by how they inflect: nouns take a plural, verbs -s, -ing and
// -ed, adjectives -ly and -ness. Chosen so that the simple rules below spell
// every form correctly.
constexpr std::string_view nouns[] = {
    "account",  "action",   "animal",    "answer",    "apple",      "area",       "army",      "art",
    "article",  "author",   "bank",      "bird",      "boat",       "body",       "book",      "border",
    "box",      "branch",   "bridge",    "brother",   "budget",     "building",   "business",  "cabin",
    "camera",   "candle",   "car",       "card",      "career",     "castle",     "cause",     "century",
    "chair",    "chance",   "chapter",   "church",    "circle",     "city",       "class",     "cloud",
    "coast",    "college",  "colour",    "community", "company",    "computer",   "corner",    "council",
    "country",  "county",   "course",    "court",     "crowd",      "culture",    "cup",       "customer",
    "daughter", "day",      "decade",    "desk",      "detail",     "dinner",     "doctor",    "dog",
    "door",     "dream",    "driver",    "economy",   "edge",       "effect",     "effort",    "election",
    "engine",   "evening",  "event",     "example",   "experience", "eye",        "face",      "fact",
    "factory",  "family",   "farm",      "father",    "feature",    "field",      "figure",    "film",
    "finger",   "fire",     "floor",     "flower",    "forest",     "friend",     "future",    "game",
    "garden",   "gate",     "girl",      "glass",     "goal",       "government", "group",     "guest",
    "hand",     "harbour",  "head",      "heart",     "hill",       "history",    "holiday",   "home",
    "horse",    "hospital", "hotel",     "hour",      "house",      "idea",       "island",    "issue",
    "journey",  "judge",    "key",       "kitchen",   "lake",       "land",       "language",  "law",
    "leader",   "lesson",   "letter",    "level",     "library",    "light",      "line",      "list",
    "machine",  "market",   "meeting",   "member",    "memory",     "message",    "method",    "minute",
    "moment",   "money",    "month",     "morning",   "mother",     "mountain",   "movement",  "museum",
    "music",    "nation",   "nature",    "neighbour", "network",    "night",      "number",    "ocean",
    "office",   "officer",  "opinion",   "order",     "page",       "painting",   "paper",     "parent",
    "park",     "party",    "path",      "patient",   "pattern",    "period",     "picture",   "piece",
    "place",    "plan",     "planet",    "plant",     "player",     "pocket",     "poem",      "point",
    "police",   "policy",   "power",     "price",     "problem",    "process",    "product",   "project",
    "question", "reason",   "record",    "region",    "report",     "river",      "road",      "rock",
    "room",     "rule",     "school",    "science",   "sea",        "season",     "secret",    "service",
    "shadow",   "ship",     "shop",      "side",      "signal",     "sister",     "situation", "skill",
    "sky",      "society",  "soldier",   "song",      "sound",      "source",     "space",     "station",
    "stone",    "story",    "street",    "student",   "subject",    "summer",     "system",    "table",
    "teacher",  "team",     "theory",    "thing",     "thought",    "ticket",     "tower",     "town",
    "track",    "trade",    "tradition", "train",     "tree",       "valley",     "village",   "voice",
    "wall",     "war",      "watch",     "water",     "week",       "window",     "winter",    "word",
    "world",    "year",
};

constexpr std::string_view verbs[] = {
    "accept",   "achieve",  "add",      "agree",   "allow",    "answer",    "appear",  "arrange",  "arrive",
    "ask",      "attack",   "attend",   "avoid",   "believe",  "belong",    "borrow",  "build",    "burn",
    "call",     "care",     "carry",    "cause",   "change",   "charge",    "check",   "claim",    "clean",
    "climb",    "close",    "collect",  "compare", "complain", "complete",  "connect", "consider", "contain",
    "continue", "copy",     "count",    "cover",   "create",   "cross",     "dance",   "decide",   "deliver",
    "depend",   "describe", "design",   "destroy", "develop",  "discover",  "discuss", "divide",   "dream",
    "dress",    "earn",     "enjoy",    "enter",   "escape",   "establish", "examine", "excite",   "expect",
    "explain",  "explore",  "fill",     "finish",  "follow",   "gather",    "guard",   "guess",    "hand",
    "happen",   "hate",     "help",     "hope",    "hunt",     "imagine",   "improve", "include",  "increase",
    "invent",   "invite",   "join",     "jump",    "kill",     "kiss",      "laugh",   "learn",    "light",
    "like",     "listen",   "live",     "look",    "love",     "manage",    "mark",    "marry",    "measure",
    "mention",  "mind",     "move",     "need",    "notice",   "offer",     "open",    "order",    "own",
    "paint",    "pass",     "perform",  "pick",    "place",    "play",      "point",   "pour",     "practise",
    "prefer",   "prepare",  "present",  "press",   "prevent",  "produce",   "promise", "protect",  "provide",
    "pull",     "push",     "question", "raise",   "reach",    "receive",   "record",  "reduce",   "relax",
    "remain",   "remember", "remove",   "repair",  "repeat",   "replace",   "report",  "rescue",   "respect",
    "return",   "save",     "search",   "seem",    "serve",    "settle",    "share",   "shout",    "smile",
    "solve",    "sound",    "start",    "stay",    "suggest",  "supply",    "support", "surprise", "talk",
    "taste",    "test",     "thank",    "touch",   "train",    "travel",    "treat",   "try",      "turn",
    "use",      "visit",    "wait",     "walk",    "want",     "warn",      "wash",    "watch",    "wish",
    "wonder",   "work",     "worry",    "yield",
};

constexpr std::string_view adjectives[] = {
    "able",    "absolute", "active",   "actual",  "angry",    "anxious", "aware",    "bad",    "beautiful",
    "brave",   "bright",   "brief",    "busy",    "calm",     "careful", "cheap",    "clear",  "clever",
    "close",   "cold",     "complete", "correct", "curious",  "dark",    "dear",     "deep",   "direct",
    "eager",   "easy",     "empty",    "equal",   "exact",    "fair",    "faithful", "final",  "firm",
    "foolish", "formal",   "free",     "fresh",   "full",     "general", "gentle",   "glad",   "gradual",
    "great",   "happy",    "hard",     "heavy",   "helpful",  "honest",  "huge",     "kind",   "large",
    "late",    "lazy",     "light",    "local",   "loud",     "lucky",   "main",     "modern", "narrow",
    "natural", "near",     "neat",     "new",     "nice",     "normal",  "obvious",  "odd",    "open",
    "perfect", "plain",    "polite",   "poor",    "possible", "proper",  "proud",    "public", "quick",
    "quiet",   "rapid",    "rare",     "ready",   "real",     "recent",  "regular",  "rich",   "rough",
    "rude",    "sad",      "safe",     "serious", "sharp",    "short",   "silent",   "simple", "slow",
    "small",   "smooth",   "soft",     "special", "steady",   "strange", "strict",   "strong", "sudden",
    "sweet",   "swift",    "tender",   "thick",   "tight",    "tiny",    "total",    "true",   "usual",
    "vague",   "warm",     "weak",     "wide",    "wild",     "wise",    "wrong",    "young",
};

/// SplitMix64: tiny, fast and well mixed; the corpus must not depend on the
/// standard library's distributions, which differ between implementations.
struct splitmix64 {
    std::uint64_t state;
    std::uint64_t next() {
        std::uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        return z ^ (z >> 31);
    }
    /// Uniform in [0, 1).
    double unit() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }
    std::size_t below(std::size_t n) { return static_cast<std::size_t>(unit() * static_cast<double>(n)); }
};

bool is_vowel(char c) {
    return c == 'a' || c == 'e' || c == 'i' || c == 'o' || c == 'u';
}

bool ends_in_consonant_y(std::string_view w) {
    return w.size() >= 2 && w.back() == 'y' && !is_vowel(w[w.size() - 2]);
}

std::string plural(std::string_view w) {
    std::string s(w);
    if (w.ends_with('s') || w.ends_with('x') || w.ends_with("ch") || w.ends_with("sh")) return s + "es";
    if (ends_in_consonant_y(w)) return s.substr(0, s.size() - 1) + "ies";
    return s + "s";
}

std::string ing(std::string_view w) {
    std::string s(w);
    if (w.ends_with('e') && !w.ends_with("ee")) s.pop_back();
    return s + "ing";
}

std::string past(std::string_view w) {
    std::string s(w);
    if (w.ends_with('e')) return s + "d";
    if (ends_in_consonant_y(w)) return s.substr(0, s.size() - 1) + "ied";
    return s + "ed";
}

std::string adverb(std::string_view w) {
    std::string s(w);
    if (w.ends_with("le")) return s.substr(0, s.size() - 1) + "y";
    if (w == "true") return "truly";
    if (w.ends_with("ll")) return s + "y";
    if (ends_in_consonant_y(w)) return s.substr(0, s.size() - 1) + "ily";
    return s + "ly";
}

std::string noun_of(std::string_view w) {
    std::string s(w);
    if (ends_in_consonant_y(w)) return s.substr(0, s.size() - 1) + "iness";
    return s + "ness";
}

/// Every content word form, most common first: base forms, then inflected ones.
const std::vector<std::string>& content_words() {
    static const std::vector<std::string> words = [] {
        std::vector<std::string> base, inflected;
        for (std::string_view n : nouns) {
            base.emplace_back(n);
            inflected.push_back(plural(n));
        }
        for (std::string_view v : verbs) {
            base.emplace_back(v);
            inflected.push_back(plural(v));
            inflected.push_back(ing(v));
            inflected.push_back(past(v));
        }
        for (std::string_view a : adjectives) {
            base.emplace_back(a);
            inflected.push_back(adverb(a));
            inflected.push_back(noun_of(a));
        }
        // Shuffled once with a fixed seed, so that the frequency ranks mix the
        // kinds of word and the forms of one word.
        std::vector<std::string> unique;
        std::unordered_set<std::string> seen;
        for (auto* list : {&base, &inflected})
            for (auto& w : *list)
                if (seen.insert(w).second) unique.push_back(std::move(w));
        splitmix64 rng{20240501};
        for (std::size_t i = unique.size(); i > 1; --i) std::swap(unique[i - 1], unique[rng.below(i)]);
        return unique;
    }();
    return words;
}

const std::unordered_set<std::string_view>& stop_word_set() {
    static const std::unordered_set<std::string_view> set(std::begin(stop_words), std::end(stop_words));
    return set;
}

// ---- the generator ---------------------------------------------------------

/// A rank in [0, n) with a Zipf-like skew: rank r is about as likely as
/// 1/(r + 10), so the commonest word is some 2 % of the content words.
std::size_t skewed(splitmix64& rng, std::size_t n) {
    constexpr double q = 10;
    const double r = q * std::pow((static_cast<double>(n) + q) / q, rng.unit()) - q;  // log-uniform
    return std::min(n - 1, static_cast<std::size_t>(r));
}

std::string generate(std::uint64_t index) {
    const auto& words = content_words();
    splitmix64 rng{index * 0x2545f4914f6cdd1dULL + 1};
    std::string doc;
    doc.reserve(1600);
    const std::size_t target = 180 + rng.below(41);  // words in this document
    std::size_t count = 0;
    while (count < target) {
        const std::size_t sentence = 6 + rng.below(15);
        for (std::size_t i = 0; i < sentence; ++i, ++count) {
            std::string w = rng.unit() < 0.42 ? std::string(stop_words[rng.below(std::size(stop_words))])
                                              : words[skewed(rng, words.size())];
            if (i == 0) {
                w[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(w[0])));
            } else {
                doc += (rng.unit() < 0.06 ? ", " : " ");
            }
            doc += w;
        }
        doc += rng.unit() < 0.1 ? "? " : ". ";
        if (rng.unit() < 0.15) doc += "\n\n";
    }
    doc.pop_back();
    doc += '\n';
    return doc;
}

// ---- stemming --------------------------------------------------------------

/// One libstemmer object per thread: it holds its working buffer, so it must
/// never be shared. Made on first use, freed when the thread ends.
class thread_stemmer {
public:
    thread_stemmer() : m_stemmer(sb_stemmer_new("english", "UTF_8")) {
        if (!m_stemmer) throw std::bad_alloc();
    }
    ~thread_stemmer() { sb_stemmer_delete(m_stemmer); }
    thread_stemmer(const thread_stemmer&) = delete;
    thread_stemmer& operator=(const thread_stemmer&) = delete;

    std::string operator()(std::string_view word) {
        const sb_symbol* out = sb_stemmer_stem(m_stemmer, reinterpret_cast<const sb_symbol*>(word.data()),
                                               static_cast<int>(word.size()));
        if (!out) throw std::bad_alloc();
        return std::string(reinterpret_cast<const char*>(out),
                           static_cast<std::size_t>(sb_stemmer_length(m_stemmer)));
    }

private:
    sb_stemmer* m_stemmer;
};

thread_stemmer& stemmer() {
    thread_local thread_stemmer s;
    return s;
}

bool is_word_byte(unsigned char c) {
    return std::isalnum(c) || c >= 0x80;
}

}  // namespace

std::string make_document(std::uint64_t index) {
    // Document 19, 39, 59 … repeats one before it (which may itself be a repeat).
    while (index % 20 == 19) {
        splitmix64 rng{index};
        index = rng.next() % index;
    }
    return generate(index);
}

std::vector<std::string> remove_stop_words(const std::string& doc) {
    const auto& stops = stop_word_set();
    std::vector<std::string> out;
    out.reserve(doc.size() / 10);
    std::string word;
    const std::size_t n = doc.size();
    for (std::size_t i = 0; i < n;) {
        const auto c = static_cast<unsigned char>(doc[i]);
        if (!is_word_byte(c)) {
            ++i;
            continue;
        }
        word.clear();
        // A word: word bytes, with apostrophes only between them ("don't").
        while (i < n) {
            const auto d = static_cast<unsigned char>(doc[i]);
            if (is_word_byte(d)) {
                word += static_cast<char>(std::tolower(d));
                ++i;
            } else if (d == '\'' && i + 1 < n && is_word_byte(static_cast<unsigned char>(doc[i + 1]))) {
                word += '\'';
                ++i;
            } else {
                break;
            }
        }
        if (!stops.contains(word)) out.push_back(word);
    }
    return out;
}

std::string stem_word(std::string_view word) {
    return stemmer()(word);
}

std::vector<std::string> stem(const std::vector<std::string>& words) {
    thread_stemmer& s = stemmer();
    std::vector<std::string> out;
    out.reserve(words.size());
    for (const std::string& w : words) out.push_back(s(w));
    return out;
}

std::optional<std::vector<std::string>> deduper::operator()(std::vector<std::string> words) {
    // FNV-1a over the words, each closed by a byte no word holds: 64 bits make
    // a false "seen" among millions of documents unlikely enough for counting.
    std::uint64_t h = 0xcbf29ce484222325ULL;
    for (const std::string& w : words) {
        for (const char c : w) h = (h ^ static_cast<unsigned char>(c)) * 0x100000001b3ULL;
        h = (h ^ 0xffu) * 0x100000001b3ULL;
    }
    if (!seen.insert(h).second) return std::nullopt;
    return words;
}

void word_counts::add(const std::vector<std::string>& words) {
    for (const std::string& w : words) ++counts[w];
}

std::vector<std::pair<std::string, std::uint64_t>> word_counts::top(std::size_t n) const {
    std::vector<std::pair<std::string, std::uint64_t>> all(counts.begin(), counts.end());
    n = std::min(n, all.size());
    std::partial_sort(all.begin(), all.begin() + static_cast<std::ptrdiff_t>(n), all.end(),
                      [](const auto& a, const auto& b) {
                          return a.second != b.second ? a.second > b.second : a.first < b.first;
                      });
    all.resize(n);
    return all;
}

std::size_t peak_rss_kib() {
    std::ifstream status("/proc/self/status");
    std::string line;
    while (std::getline(status, line)) {
        if (line.starts_with("VmHWM:")) return static_cast<std::size_t>(std::stoull(line.substr(6)));
    }
    return 0;
}

void reset_peak_rss() {
    // Freed heap memory first goes back to the kernel, or the mark would stay
    // as high as whatever ran before left the heap.
    malloc_trim(0);
    if (std::FILE* f = std::fopen("/proc/self/clear_refs", "w")) {
        std::fputs("5", f);
        std::fclose(f);
    }
}

}  // namespace textpipe
