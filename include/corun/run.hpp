// corun::run — asyncio.run for C++: drive a coroutine to completion.
#pragma once

#include <exception>
#include <optional>
#include <stdexcept>
#include <type_traits>
#include <utility>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>

#include "corun/awaitable.hpp"

namespace corun {

namespace detail {

/// Where a coroutine spawned by `run` leaves its outcome.
template <class T>
struct run_outcome {
    std::optional<std::conditional_t<std::is_void_v<T>, bool, T>> value;
    std::exception_ptr error;
    bool finished = false;

    T get() {
        if (!finished) throw std::logic_error("corun::run: the coroutine was destroyed before it finished");
        if (error) std::rethrow_exception(error);
        if constexpr (!std::is_void_v<T>) return std::move(*value);
    }
};

/// Spawns `main` on `loop`, to record its outcome in `out`.
template <class T>
void spawn_main(asio::io_context& loop, awaitable<T> main, run_outcome<T>& out) {
    asio::co_spawn(
        loop,
        [](awaitable<T> a, run_outcome<T>& o) -> awaitable<void> {
            if constexpr (std::is_void_v<T>) {
                co_await std::move(a);
                o.value.emplace(true);
            } else {
                o.value.emplace(co_await std::move(a));
            }
        }(std::move(main), out),
        [&out](std::exception_ptr e) {
            out.error = std::move(e);
            out.finished = true;
        });
}

}  // namespace detail

/// Runs `main` on a fresh single-threaded event loop until it and everything
/// it spawned have finished, then returns its value or rethrows its exception.
/// Like Python's `asyncio.run`, it is the entry point of a program:
///
/// @code
/// int main() { return corun::run(app()); }
/// @endcode
template <class T>
T run(awaitable<T> main) {
    asio::io_context loop{1};
    detail::run_outcome<T> outcome;
    detail::spawn_main(loop, std::move(main), outcome);
    loop.run();
    return outcome.get();
}

}  // namespace corun
