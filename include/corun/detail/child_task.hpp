// Spawning one child of a combinator.
#pragma once

#include <exception>
#include <type_traits>
#include <utility>
#include <variant>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/co_spawn.hpp>

#include "corun/awaitable.hpp"
#include "corun/detail/child_group.hpp"

namespace corun::detail {

/// What a child contributes to a combinator's result: `void` becomes an empty
/// placeholder so results always have a type.
template <class T>
using value_or_monostate = std::conditional_t<std::is_void_v<T>, std::monostate, T>;

template <class A>
struct awaitable_traits;
template <class T>
struct awaitable_traits<asio::awaitable<T, executor>> {
    using value_type = T;
};
/// The `T` of a range whose elements are `awaitable<T>`.
template <class R>
using range_awaitable_value_t =
    typename awaitable_traits<std::remove_cvref_t<std::ranges::range_reference_t<R>>>::value_type;

/// Awaits `child` and hands its outcome to `sink.done(value)` or
/// `sink.failed(exception)`. Running the child inside this frame, rather than
/// co_spawning it directly, lets any `T` through (co_spawn needs a
/// default-constructible one) and moves the value straight into its slot.
template <class T, class Sink>
awaitable<void> child_task(awaitable<T> child, Sink sink) {
    std::exception_ptr error;
    try {
        if constexpr (std::is_void_v<T>) {
            co_await std::move(child);
            sink.done(std::monostate{});
        } else {
            sink.done(co_await std::move(child));
        }
        co_return;
    } catch (...) {
        error = std::current_exception();
    }
    sink.failed(std::move(error));
}

/// Runs when a spawned child task has ended: the owner frees its slot and
/// reacts (starts the next child, cancels the rest, wakes the waiter).
template <class Owner>
struct child_exit {
    Owner* owner;
    std::size_t slot;
    void operator()(std::exception_ptr) const { owner->child_exit(slot); }
};

/// Starts `child` now on `ex`, cancellable through a fresh slot of `group`.
template <class T, class Sink, class Owner>
void spawn_child(const executor& ex, child_group& group, Owner* owner, Sink sink, awaitable<T> child) {
    const std::size_t slot = group.open();
    asio::co_spawn(ex, child_task(std::move(child), std::move(sink)),
                   asio::bind_cancellation_slot(group.slot(slot), child_exit<Owner>{owner, slot}));
}

}  // namespace corun::detail
