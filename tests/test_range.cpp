#include "corun/range.hpp"

#include <limits>
#include <ranges>
#include <vector>

#include "support.hpp"

namespace {
std::vector<std::int64_t> list(corun::range_view r) {
    return {r.begin(), r.end()};
}
}  // namespace

TEST_CASE("range follows Python's range", "[range]") {
    using v = std::vector<std::int64_t>;
    CHECK(list(corun::range(5)) == v{0, 1, 2, 3, 4});
    CHECK(list(corun::range(2, 10, 3)) == v{2, 5, 8});
    CHECK(list(corun::range(5, 0, -2)) == v{5, 3, 1});
    CHECK(list(corun::range(0)).empty());
    CHECK(list(corun::range(-3)).empty());
    CHECK(list(corun::range(3, 3)).empty());
    CHECK(list(corun::range(0, 10, -1)).empty());
    CHECK(corun::range(0, 10, 3).size() == 4);
    CHECK_THROWS_AS(corun::range(0, 1, 0), std::invalid_argument);
}

TEST_CASE("range is a lazy random-access view that composes with std::views", "[range]") {
    static_assert(std::ranges::random_access_range<corun::range_view>);
    static_assert(std::ranges::view<corun::range_view>);
    auto big = corun::range(10'000'000);
    CHECK(big.size() == 10'000'000);
    CHECK(big[9'999'999] == 9'999'999);
    auto doubled = corun::range(4) | std::views::transform([](std::int64_t i) { return i * 2; });
    CHECK(std::vector<std::int64_t>(doubled.begin(), doubled.end()) == std::vector<std::int64_t>{0, 2, 4, 6});
}

TEST_CASE("range is exact at the limits of int64", "[range]") {
    constexpr auto max = std::numeric_limits<std::int64_t>::max();
    constexpr auto min = std::numeric_limits<std::int64_t>::min();
    CHECK(corun::range(0, max, 2).size() == 0x4000000000000000ULL);
    auto top = corun::range(max - 2, max);
    CHECK(std::vector<std::int64_t>(top.begin(), top.end()) == std::vector<std::int64_t>{max - 2, max - 1});
    auto down = corun::range(min + 4, min, -2);
    CHECK(std::vector<std::int64_t>(down.begin(), down.end()) == std::vector<std::int64_t>{min + 4, min + 2});
    CHECK(corun::range(0, max).size() == std::size_t(max));
    CHECK_THROWS_AS(corun::range(min, max), std::length_error);
    CHECK(corun::range(5, 0, -1).size() == 5);
}
