// corun::detail::with_token — one composed operation, any completion token.
#pragma once

#include <type_traits>
#include <utility>

#include <boost/asio/co_spawn.hpp>

#include "corun/awaitable.hpp"

namespace corun::detail {

template <class T>
concept token_for_awaitable = std::is_same_v<std::decay_t<T>, use_awaitable_t>;

/// Runs a composed operation with any completion token: the awaitable itself
/// for the default token, `co_spawn` on `ex` for the others (a callback
/// `(std::exception_ptr, R)`, `use_future`, `deferred` …).
template <class T, class Token>
auto with_token(const executor& ex, awaitable<T> op, Token&& token) {
    if constexpr (token_for_awaitable<Token>) {
        return op;
    } else {
        return asio::co_spawn(ex, std::move(op), std::forward<Token>(token));
    }
}

}  // namespace corun::detail
