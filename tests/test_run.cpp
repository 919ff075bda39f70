#include "corun/run.hpp"

#include <stdexcept>

#include <boost/asio/detached.hpp>

#include "support.hpp"

TEST_CASE("run returns the coroutine's value after the loop drains", "[run]") {
    bool detached_ran = false;
    auto main = [&]() -> corun::awaitable<int> {
        auto ex = co_await corun::this_executor();
        boost::asio::co_spawn(
            ex,
            [&]() -> corun::awaitable<void> {
                co_await corun_test::sleep_for(std::chrono::milliseconds(5));
                detached_ran = true;
            },
            boost::asio::detached);
        co_return 3;
    };
    CHECK(corun::run(main()) == 3);
    CHECK(detached_ran);
}

TEST_CASE("run rethrows the coroutine's exception", "[run]") {
    auto main = []() -> corun::awaitable<void> {
        co_await corun_test::sleep_for(std::chrono::milliseconds(1));
        throw std::domain_error("from main");
    };
    CHECK_THROWS_AS(corun::run(main()), std::domain_error);
}
