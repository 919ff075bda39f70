#include "corun/gather.hpp"

#include <boost/asio/experimental/awaitable_operators.hpp>
#include <stdexcept>
#include <string>
#include <vector>

#include "corun/range.hpp"
#include "support.hpp"

using namespace corun_test;
using namespace std::chrono_literals;
using corun::awaitable;

namespace {

awaitable<int> fail_after(std::chrono::milliseconds d, std::string what) {
    co_await sleep_for(d);
    throw std::runtime_error(what);
}

struct no_default {
    explicit no_default(int v) : value(v) {}
    int value;
};

}  // namespace

TEST_CASE("gather returns results in argument order whatever the completion order", "[gather]") {
    auto [a, b, c] = block_on(corun::gather(after(30ms, 1), after(1ms, 2), after(15ms, 3)));
    CHECK(a == 1);
    CHECK(b == 2);
    CHECK(c == 3);
}

TEST_CASE("gather of mixed types gives a void child an empty placeholder", "[gather]") {
    auto result = block_on([]() -> awaitable<std::tuple<int, std::monostate, std::string>> {
        co_return co_await corun::gather(after(1ms, 7), sleep_for(2ms),
                                         []() -> awaitable<std::string> { co_return "s"; }());
    }());
    CHECK(std::get<0>(result) == 7);
    CHECK(std::get<2>(result) == "s");
}

TEST_CASE("gather over a range returns a vector in input order", "[gather]") {
    auto out = block_on([]() -> awaitable<std::vector<int>> {
        std::vector<awaitable<int>> children;
        for (int i = 0; i < 20; ++i) children.push_back(after(std::chrono::milliseconds((20 - i) % 7), i));
        co_return co_await corun::gather(std::move(children));
    }());
    REQUIRE(out.size() == 20);
    for (int i = 0; i < 20; ++i) CHECK(out[i] == i);
}

TEST_CASE("gather accepts results that are not default-constructible", "[gather]") {
    auto out = block_on([]() -> awaitable<std::vector<no_default>> {
        co_return co_await corun::gather(corun::range(5) | std::views::transform([](std::int64_t i) {
                                             return [](int v) -> awaitable<no_default> {
                                                 co_return no_default(v * 10);
                                             }(static_cast<int>(i));
                                         }));
    }());
    REQUIRE(out.size() == 5);
    CHECK(out[4].value == 40);
}

TEST_CASE("gather rethrows the first exception after cancelling and awaiting the siblings", "[gather]") {
    cancel_log s1, s2;
    bool sibling_finished_before_throw = false;
    std::string caught;
    block_on([&]() -> awaitable<void> {
        try {
            co_await corun::gather(logged_sleep(s1), fail_after(5ms, "boom"), logged_sleep(s2));
        } catch (const std::runtime_error& e) {
            caught = e.what();
            sibling_finished_before_throw = s1.finished && s2.finished;
        }
        // Give anything that escaped a chance to run on: it must not.
        co_await sleep_for(30ms);
    }());
    CHECK(caught == "boom");
    CHECK(sibling_finished_before_throw);
    CHECK(s1.cancelled);
    CHECK(s2.cancelled);
    CHECK_FALSE(s1.ran_past_cancellation);
    CHECK_FALSE(s2.ran_past_cancellation);
}

TEST_CASE("range gather stops starting children after the first failure", "[gather]") {
    int started = 0;
    std::vector<cancel_log> logs(10);
    CHECK_THROWS_WITH(block_on(corun::gather(corun::range(10) | std::views::transform([&](std::int64_t i) {
                                                 ++started;
                                                 return i == 1 ? fail_after(2ms, "second fails")
                                                               : logged_sleep(logs[i]);
                                             }),
                                             {.limit = 3})),
                      "second fails");
    CHECK(started == 3);
    CHECK(logs[0].cancelled);
    CHECK(logs[2].cancelled);
    CHECK_FALSE(logs[0].ran_past_cancellation);
}

TEST_CASE("gather with a limit never has more than limit children in flight", "[gather]") {
    int in_flight = 0, max_in_flight = 0, done = 0;
    auto child = [&](std::int64_t i) -> awaitable<int> {
        max_in_flight = std::max(max_in_flight, ++in_flight);
        co_await sleep_for(std::chrono::milliseconds(1 + i % 3));
        --in_flight;
        ++done;
        co_return static_cast<int>(i);
    };
    auto out = block_on(corun::gather(corun::range(50) | std::views::transform(child), {.limit = 4}));
    CHECK(max_in_flight == 4);
    CHECK(done == 50);
    CHECK(out[49] == 49);
}

TEST_CASE("gather of an empty range completes at once", "[gather]") {
    std::vector<awaitable<int>> none;
    CHECK(block_on(corun::gather(std::move(none))).empty());
    std::vector<awaitable<void>> no_voids;
    block_on(corun::gather(std::move(no_voids), {.limit = 2}));
    CHECK(block_on(corun::gather_settled(std::vector<awaitable<int>>{})).empty());
}

TEST_CASE("gather runs 10 000 children concurrently", "[gather]") {
    auto out = block_on(corun::gather(corun::range(10'000) | std::views::transform([](std::int64_t i) {
                                          return after(5ms, static_cast<int>(i) * 2);
                                      })));
    REQUIRE(out.size() == 10'000);
    for (int i = 0; i < 10'000; ++i) REQUIRE(out[i] == i * 2);
}

TEST_CASE("gather_settled returns every outcome and never throws for a child", "[gather]") {
    auto [a, b, c] = block_on(corun::gather_settled(after(3ms, 1), fail_after(1ms, "bad"), sleep_for(2ms)));
    REQUIRE(a.has_value());
    CHECK(a.value() == 1);
    REQUIRE_FALSE(b.has_value());
    CHECK_THROWS_WITH(b.value(), "bad");
    CHECK(c.has_value());

    auto many = block_on(corun::gather_settled(corun::range(6) | std::views::transform([](std::int64_t i) {
                                                   return i % 2 ? fail_after(1ms, std::to_string(i))
                                                                : after(2ms, static_cast<int>(i));
                                               }),
                                               {.limit = 2}));
    REQUIRE(many.size() == 6);
    CHECK(many[0].value() == 0);
    CHECK_THROWS_WITH(many[3].value(), "3");
    CHECK(many[4].value() == 4);
}

TEST_CASE("gather is cancelled through || with a timer, children and all", "[gather]") {
    using namespace boost::asio::experimental::awaitable_operators;
    cancel_log s1, s2;
    bool timer_won = false;
    block_on([&]() -> awaitable<void> {
        auto winner = co_await (corun::gather(logged_sleep(s1), logged_sleep(s2)) || sleep_for(10ms));
        timer_won = winner.index() == 1;
        co_await sleep_for(20ms);
    }());
    CHECK(timer_won);
    CHECK(s1.cancelled);
    CHECK(s2.cancelled);
    CHECK_FALSE(s1.ran_past_cancellation);
}

TEST_CASE("a cancelled range gather with a limit never starts the rest", "[gather]") {
    using namespace boost::asio::experimental::awaitable_operators;
    int started = 0;
    std::vector<cancel_log> logs(100);
    block_on([&]() -> awaitable<void> {
        co_await (corun::gather(corun::range(100) | std::views::transform([&](std::int64_t i) {
                                    ++started;
                                    return logged_sleep(logs[i]);
                                }),
                                {.limit = 5}) ||
                  sleep_for(5ms));
    }());
    CHECK(started == 5);
    for (int i = 0; i < 5; ++i) CHECK(logs[i].cancelled);
}

TEST_CASE("a child that fails at once stops the rest from starting", "[gather]") {
    int started = 0;
    auto make = [&](std::int64_t i) -> awaitable<int> {
        ++started;
        return i == 0 ? []() -> awaitable<int> { throw std::runtime_error("at once"); co_return 0; }()
                      : after(1ms, 1);
    };
    CHECK_THROWS_WITH(block_on(corun::gather(corun::range(100) | std::views::transform(make))), "at once");
    CHECK(started == 1);
}

TEST_CASE("a range element that throws while being made is that child's failure", "[gather]") {
    cancel_log first;
    auto make = [&](std::int64_t i) -> awaitable<int> {
        if (i == 1) throw std::runtime_error("make failed");
        return logged_sleep(first, 10s);
    };
    CHECK_THROWS_WITH(block_on(corun::gather(corun::range(3) | std::views::transform(make))), "make failed");
    CHECK(first.cancelled);
    CHECK(first.finished);
    // With a limit the element is made from a child's completion handler: the
    // failure must still come out of the co_await, not out of the event loop.
    auto quick = [](std::int64_t i) -> awaitable<int> {
        if (i == 1) throw std::runtime_error("made late");
        return after(1ms, 0);
    };
    CHECK_THROWS_WITH(block_on(corun::gather(corun::range(3) | std::views::transform(quick), {.limit = 1})),
                      "made late");
    auto settled = block_on(corun::gather_settled(corun::range(3) | std::views::transform([](std::int64_t i) {
                                                      if (i == 1) throw std::runtime_error("made badly");
                                                      return after(1ms, static_cast<int>(i));
                                                  })));
    CHECK(settled[0].value() == 0);
    CHECK_THROWS_WITH(settled[1].value(), "made badly");
    CHECK(settled[2].value() == 2);
}

TEST_CASE("a gather cancelled by a signal has finished every child when it completes", "[gather]") {
    cancel_log a, b;
    bool children_done_at_completion = false;
    boost::system::error_code code;
    boost::asio::io_context loop;
    boost::asio::cancellation_signal stop;
    boost::asio::co_spawn(
        loop, corun::gather(logged_sleep(a), logged_sleep(b)),
        boost::asio::bind_cancellation_slot(stop.slot(), [&](std::exception_ptr e, std::tuple<int, int>) {
            children_done_at_completion = a.finished && b.finished;
            try {
                if (e) std::rethrow_exception(e);
            } catch (const boost::system::system_error& se) {
                code = se.code();
            }
        }));
    boost::asio::steady_timer t(loop, 5ms);
    t.async_wait([&](auto) { stop.emit(boost::asio::cancellation_type::terminal); });
    loop.run_for(5s);
    CHECK(children_done_at_completion);
    CHECK(code == boost::asio::error::operation_aborted);
    CHECK(a.cancelled);
    CHECK(b.cancelled);
}
