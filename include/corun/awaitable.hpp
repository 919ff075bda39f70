// corun — the vocabulary every other header builds on.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

/// Marks the few non-template entry points compiled into the library (it is
/// built with hidden visibility).
#define CORUN_API __attribute__((visibility("default")))

namespace corun {

namespace asio = boost::asio;

/// The executor corun's coroutines run on: Asio's polymorphic I/O executor.
using executor = asio::any_io_executor;

/// A coroutine of corun is an Asio awaitable, so it composes with any Asio or
/// Beast code: `co_await` it from another awaitable, `co_spawn` it, `||` it.
template <class T = void>
using awaitable = asio::awaitable<T, executor>;

/// The completion token corun's operations default to: `co_await op(...)`.
using use_awaitable_t = asio::use_awaitable_t<executor>;
inline constexpr use_awaitable_t use_awaitable{};

/// `co_await corun::this_executor()` gives the executor the coroutine runs on.
constexpr asio::this_coro::executor_t this_executor() noexcept {
    return {};
}

}  // namespace corun
