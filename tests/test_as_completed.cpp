#include "corun/as_completed.hpp"

#include <boost/asio/experimental/awaitable_operators.hpp>
#include <vector>

#include "corun/range.hpp"
#include "support.hpp"

using namespace corun_test;
using namespace std::chrono_literals;
using corun::awaitable;

TEST_CASE("as_completed yields results in completion order with their input index", "[as_completed]") {
    std::vector<std::size_t> order;
    std::vector<int> values;
    block_on([&]() -> awaitable<void> {
        std::vector<awaitable<int>> children;
        children.push_back(after(40ms, 0));
        children.push_back(after(5ms, 10));
        children.push_back(after(20ms, 20));
        auto stream = corun::as_completed(std::move(children));
        while (auto done = co_await stream.next()) {
            order.push_back(done->index);
            values.push_back(done->value());
        }
    }());
    CHECK(order == std::vector<std::size_t>{1, 2, 0});
    CHECK(values == std::vector<int>{10, 20, 0});
}

TEST_CASE("as_completed hands a failure over as that child's outcome", "[as_completed]") {
    block_on([&]() -> awaitable<void> {
        std::vector<awaitable<int>> children;
        children.push_back(after(10ms, 1));
        children.push_back([]() -> awaitable<int> {
            co_await sleep_for(1ms);
            throw std::out_of_range("nope");
        }());
        auto stream = corun::as_completed(std::move(children));
        auto first = co_await stream.next();
        REQUIRE(first);
        CHECK(first->index == 1);
        CHECK_THROWS_AS(first->value(), std::out_of_range);
        auto second = co_await stream.next();
        REQUIRE(second);
        CHECK(second->value() == 1);
        CHECK_FALSE(co_await stream.next());
    }());
}

TEST_CASE("stopping as_completed early cancels the children still running", "[as_completed]") {
    int cancelled = 0, ran_on = 0;
    auto child = [&](std::int64_t i) -> awaitable<int> {
        try {
            co_await sleep_for(i == 0 ? 1ms : 10s);
        } catch (const boost::system::system_error&) {
            ++cancelled;
            throw;
        }
        if (i != 0) ++ran_on;
        co_return static_cast<int>(i);
    };
    block_on([&]() -> awaitable<void> {
        auto stream = corun::as_completed(corun::range(5) | std::views::transform(child));
        auto first = co_await stream.next();
        CHECK(first->index == 0);
        co_await stream.close();
        CHECK(cancelled == 4);
    }());
    CHECK(ran_on == 0);

    cancelled = 0;
    block_on([&]() -> awaitable<void> {
        {
            auto stream = corun::as_completed(corun::range(5) | std::views::transform(child));
            co_await stream.next();
        }  // dropped: the rest are cancelled without waiting
        co_await sleep_for(20ms);
        CHECK(cancelled == 4);
    }());
    CHECK(ran_on == 0);
}

TEST_CASE("as_completed with a limit bounds running plus unread results", "[as_completed]") {
    // in_flight counts children made but not yet handed to the consumer loop
    // body; the one the body holds is counted until it decrements, so the
    // stream's own bound of 3 shows here as 3 + 1.
    int in_flight = 0, max_in_flight = 0, consumed = 0;
    block_on([&]() -> awaitable<void> {
        auto stream = corun::as_completed(corun::range(30) | std::views::transform([&](std::int64_t i) {
                                              ++in_flight;
                                              max_in_flight = std::max(max_in_flight, in_flight);
                                              return after(std::chrono::milliseconds(i % 3), 0);
                                          }),
                                          {.limit = 3});
        while (auto done = co_await stream.next()) {
            --in_flight;
            ++consumed;
            co_await sleep_for(2ms);  // a slow consumer must not let work pile up
        }
    }());
    CHECK(consumed == 30);
    CHECK(max_in_flight == 3 + 1);
}

TEST_CASE("as_completed over an empty range ends at once", "[as_completed]") {
    block_on([]() -> awaitable<void> {
        auto stream = corun::as_completed(std::vector<awaitable<void>>{});
        CHECK_FALSE(co_await stream.next());
    }());
}

TEST_CASE("cancelling next() stops the stream and says so instead of ending it", "[as_completed]") {
    using namespace boost::asio::experimental::awaitable_operators;
    int made = 0;
    block_on([&]() -> awaitable<void> {
        auto stream = corun::as_completed(corun::range(10) | std::views::transform([&](std::int64_t) {
                                              ++made;
                                              return after(20ms, 1);
                                          }),
                                          {.limit = 2});
        auto first = co_await (stream.next() || sleep_for(5ms));
        CHECK(first.index() == 1);
        bool aborted = false;
        try {
            while (co_await stream.next()) {
            }
        } catch (const boost::system::system_error& e) {
            aborted = e.code() == boost::asio::error::operation_aborted;
        }
        CHECK(aborted);
    }());
    CHECK(made == 2);
}
