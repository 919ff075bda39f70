#include "corun/timeout.hpp"

#include <boost/asio/experimental/awaitable_operators.hpp>

#include "support.hpp"

using namespace corun_test;
using namespace std::chrono_literals;
using corun::awaitable;

TEST_CASE("with_timeout returns the value of an operation that finishes in time", "[timeout]") {
    cancel_log log;
    CHECK(block_on(corun::with_timeout(1s, logged_sleep(log, 1ms))) == 42);
    CHECK(log.finished);
    CHECK_FALSE(log.cancelled);
}

TEST_CASE("with_timeout cancels the operation and waits for it before throwing", "[timeout]") {
    cancel_log log;
    bool finished_before_throw = false;
    block_on([&]() -> awaitable<void> {
        try {
            co_await corun::with_timeout(10ms, logged_sleep(log));
        } catch (const corun::timeout_error& e) {
            finished_before_throw = log.finished;
            CHECK(e.after() == 10ms);
            CHECK(std::string(e.what()).find("10 ms") != std::string::npos);
        }
        co_await sleep_for(20ms);
    }());
    CHECK(finished_before_throw);
    CHECK(log.cancelled);
    CHECK_FALSE(log.ran_past_cancellation);
}

TEST_CASE("with_timeout passes the operation's own exception through", "[timeout]") {
    auto failing = []() -> awaitable<void> {
        co_await sleep_for(1ms);
        throw std::logic_error("own");
    };
    CHECK_THROWS_AS(block_on(corun::with_timeout(1s, failing())), std::logic_error);
}

TEST_CASE("with_timeout keeps a value delivered despite the cancellation", "[timeout]") {
    auto stubborn = []() -> awaitable<int> {
        try {
            co_await sleep_for(10s);
        } catch (const boost::system::system_error&) {
        }
        co_return 7;
    };
    CHECK(block_on(corun::with_timeout(5ms, stubborn())) == 7);
}

TEST_CASE("with_timeout is cancelled from outside through || with a timer", "[timeout]") {
    using namespace boost::asio::experimental::awaitable_operators;
    cancel_log log;
    block_on([&]() -> awaitable<void> {
        auto r = co_await (corun::with_timeout(10s, logged_sleep(log)) || sleep_for(5ms));
        CHECK(r.index() == 1);
    }());
    CHECK(log.cancelled);
    CHECK_FALSE(log.ran_past_cancellation);
}
