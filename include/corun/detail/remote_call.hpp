// What a task is on the wire: which code to run, and the bytes it runs on.
//
// Function identity. A task names its code by address, but never by a raw
// address: an address is turned into (module, offset), the module being the
// executable or shared object holding the code (named by a hash of its path)
// and the offset being relative to where that module is loaded. A worker
// maps it back with its own load addresses. A forked worker has the same
// load addresses, but nothing here relies on it, so the same frames can run
// in a worker started from the same executable anywhere (ASLR included):
// that is the contract a later remote backend keeps.
//
// What is addressed is an *invoker*, `invoke<Mode, F, Args...>`: one
// instantiation per callable type and argument list, compiled into the user's
// program. It reads the callable and the arguments from the frame, calls, and
// writes the result. The callable itself travels by value:
//  - a plain function pointer as its own (module, offset) address;
//  - a lambda or function object as its bytes when trivially copyable (a
//    captureless lambda, or one capturing numbers by value), or through
//    cereal when it has a `serialize` function; anything else (a lambda
//    capturing a std::string, a pointer or a reference) is rejected at compile
//    time, because its state could not be rebuilt in the worker.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstring>
#include <exception>
#include <new>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "corun/awaitable.hpp"
#include "corun/detail/wire.hpp"

namespace corun::detail {

/// A code address that means the same thing in every process running the same binaries.
struct code_address {
    std::uint64_t module = 0;
    std::uint64_t offset = 0;
};

CORUN_API code_address encode_address(const void* code);
/// Throws `std::runtime_error` when no loaded module matches.
CORUN_API const void* decode_address(code_address where);

template <class F>
const void* as_code_pointer(F* f) noexcept {
    return reinterpret_cast<const void*>(f);
}

/// The signature every invoker has: read the task, write its result.
using invoker_fn = void (*)(wire::reader& in, wire::writer& out);

/// What a call's result arrives as: its value (a function returning a
/// reference gives a copy of what it refers to), `std::monostate` for `void`.
template <class T>
using wire_result_t = std::conditional_t<std::is_void_v<T>, std::monostate, std::remove_cvref_t<T>>;

template <class F>
void put_callable(wire::writer& w, const F& f) {
    if constexpr (std::is_pointer_v<F> && std::is_function_v<std::remove_pointer_t<F>>) {
        const code_address a = encode_address(as_code_pointer(f));
        w.pod(a);
    } else if constexpr (std::is_empty_v<F>) {
        // A captureless lambda has no state: its one byte means nothing.
    } else if constexpr (std::is_trivially_copyable_v<F>) {
        w.bytes(&f, sizeof f);
    } else {
        wire::put(w, f);
    }
}

/// Rebuilds the callable in the worker and calls `g` with it.
template <class F, class G>
decltype(auto) with_callable(wire::reader& r, G&& g) {
    if constexpr (std::is_pointer_v<F> && std::is_function_v<std::remove_pointer_t<F>>) {
        const auto a = r.pod<code_address>();
        F f = reinterpret_cast<F>(const_cast<void*>(decode_address(a)));
        return g(f);
    } else if constexpr (std::is_trivially_copyable_v<F>) {
        // A lambda has no default constructor to build it from: its bytes are
        // its whole state, so they are copied into suitably aligned storage.
        alignas(F) unsigned char storage[sizeof(F)] = {};
        if constexpr (!std::is_empty_v<F>) std::memcpy(storage, r.take(sizeof(F)), sizeof(F));
        return g(*std::launder(reinterpret_cast<F*>(storage)));
    } else {
        F f = wire::get<F>(r);
        return g(f);
    }
}

template <class F>
inline constexpr bool callable_can_travel =
    (std::is_pointer_v<F> && std::is_function_v<std::remove_pointer_t<F>>) ||
    (std::is_class_v<F> && std::is_trivially_copyable_v<F>) || wire::is_cereal<F>;

template <class F>
struct callable_cannot_cross_to_a_worker_process {
    static_assert(callable_can_travel<F>,
                  "corun: this callable cannot be sent to a worker process. Use a function, a "
                  "captureless lambda, a lambda capturing trivially copyable values by value, or a "
                  "function object with a cereal serialize() function.");
    static constexpr bool value = callable_can_travel<F>;
};

/// How a task calls its function: once (`submit`), on each item of a chunk
/// (`map`), on each tuple unpacked (`starmap`), or on each item, timed (a
/// pipeline's pool stage).
enum class call_mode : std::uint8_t { single, each, each_tuple, each_timed };

template <call_mode Mode, class F, class E>
struct call_result {
    using type = std::invoke_result_t<F&, const E&>;
};
template <class F, class E>
struct call_result<call_mode::each_tuple, F, E> {
    using type = decltype(std::apply(std::declval<F&>(), std::declval<const E&>()));
};
/// What one item of `map` (`each`) or `starmap` (`each_tuple`) gives.
template <call_mode Mode, class F, class E>
using call_result_t = wire_result_t<typename call_result<Mode, F, E>::type>;

/// What a chunk of `Mode` gives back: its results, timed for `each_timed`.
template <call_mode Mode, class R>
using chunk_result_t = std::conditional_t<Mode == call_mode::each_timed, timed_chunk<R>, std::vector<R>>;

/// One item of `map` or `starmap`, a `void` result as `std::monostate`.
template <call_mode Mode, class F, class E>
call_result_t<Mode, F, std::remove_cvref_t<E>> call_one(F& f, E&& e) {
    auto call = [&]() -> decltype(auto) {
        if constexpr (Mode == call_mode::each_tuple) {
            return std::apply(f, e);
        } else {
            return f(e);
        }
    };
    if constexpr (std::is_void_v<decltype(call())>) {
        call();
        return {};
    } else {
        return call();
    }
}

/// Calls `f` on each item of `chunk`; `each_timed` also says how long that took.
template <call_mode Mode, class F, class E>
chunk_result_t<Mode, call_result_t<Mode, F, E>> call_chunk(F& f, const std::vector<E>& chunk) {
    std::vector<call_result_t<Mode, F, E>> results;
    results.reserve(chunk.size());
    if constexpr (Mode == call_mode::each_timed) {
        const auto start = std::chrono::steady_clock::now();
        for (const E& e : chunk) results.push_back(call_one<Mode>(f, e));
        const auto busy = std::chrono::steady_clock::now() - start;
        return {std::move(results), std::chrono::duration_cast<std::chrono::nanoseconds>(busy).count()};
    } else {
        for (const E& e : chunk) results.push_back(call_one<Mode>(f, e));
        return results;
    }
}

/// A chunk whose items and results are both raw values (`map(square,
/// ints)`): the worker reads the items where they are in the frame and
/// writes the results straight into its answer, with the layout of a
/// `std::vector` either way.
template <call_mode Mode, class F, class E>
inline constexpr bool raw_chunk =
    Mode != call_mode::each_timed&& wire::is_raw<E>&& wire::is_raw<call_result_t<Mode, F, E>> &&
    sizeof(call_result_t<Mode, F, E>) <= 1024;

/// `raw_chunk`'s worker side: items are read in place (from a copy only when
/// they came in the segment), results go out through a small buffer.
template <call_mode Mode, class F, class E>
void call_raw_chunk(F& f, wire::reader& in, wire::writer& out) {
    using R = call_result_t<Mode, F, E>;
    const auto n = in.pod<std::uint64_t>();
    if (n > (std::uint64_t(1) << 58) / sizeof(E) ||
        (n * sizeof(E) < wire::shared_block_min && n > in.remaining() / sizeof(E)))
        throw std::runtime_error("corun: truncated sequence in frame");
    std::vector<E> copied;
    const char* items;
    if (n * sizeof(E) < wire::shared_block_min) {
        items = in.take(n * sizeof(E));
    } else {
        in.block(copied, n);
        items = reinterpret_cast<const char*>(copied.data());
    }
    auto item = [&](std::size_t i) {
        E e;
        std::memcpy(static_cast<void*>(&e), items + i * sizeof(E), sizeof(E));
        return call_one<Mode>(f, e);
    };
    out.pod(n);
    if (n * sizeof(R) >= wire::shared_block_min) {  // a block of its own, in the segment if there is one
        std::vector<R> results;
        results.reserve(n);
        for (std::size_t i = 0; i < n; ++i) results.push_back(item(i));
        out.block(results.data(), n * sizeof(R));
        return;
    }
    out.values<R>(n, item);
}

/// The worker side of one task. `single`: call `f(args...)`. `each`: call `f`
/// on every element of a chunk. `each_tuple`: `std::apply(f, element)` on
/// every element (starmap).
template <call_mode Mode, class F, class... Args>
void invoke(wire::reader& in, wire::writer& out) {
    with_callable<F>(in, [&](auto& f) {
        if constexpr (Mode == call_mode::single) {
            std::tuple<Args...> args{wire::get<Args>(in)...};
            using R = std::invoke_result_t<F&, Args&...>;
            if constexpr (std::is_void_v<R>) {
                std::apply(f, args);
            } else {
                wire::put(out, std::apply(f, args));
            }
        } else {
            using E = std::tuple_element_t<0, std::tuple<Args...>>;
            if constexpr (raw_chunk<Mode, F, E>) {
                call_raw_chunk<Mode, F, E>(f, in, out);
            } else {
                wire::put(out, call_chunk<Mode>(f, wire::get<std::vector<E>>(in)));
            }
        }
    });
}

/// How an argument of type `A` travels: a C string (a literal, a `char*`) as
/// the `std::string` it spells, anything else as its decayed type.
template <class A>
using sent_t =
    std::conditional_t<std::is_same_v<std::decay_t<A>, const char*> || std::is_same_v<std::decay_t<A>, char*>,
                       std::string, std::decay_t<A>>;

/// The argument as it is written to a task frame (see `sent_t`).
template <class A>
decltype(auto) as_sent(const A& a) {
    if constexpr (std::is_same_v<sent_t<A>, std::decay_t<A>>) {
        return (a);
    } else {
        return std::string(a);
    }
}

/// Writes the head of a task frame's payload: which invoker, and the callable.
template <call_mode Mode, class F, class... Args>
void put_task_head(wire::writer& w, const F& f) {
    static_assert(callable_cannot_cross_to_a_worker_process<F>::value);
    static const code_address invoker = encode_address(as_code_pointer(&invoke<Mode, F, Args...>));
    w.pod(invoker);
    put_callable(w, f);
}

/// Runs a task in the worker: finds the invoker, which does the rest.
CORUN_API void run_task(wire::reader& in, wire::writer& out);

}  // namespace corun::detail
