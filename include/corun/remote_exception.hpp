// corun::register_exception — a task's own exception type, back from a worker process as itself.
#pragma once

#include <exception>
#include <type_traits>
#include <typeinfo>

#include "corun/awaitable.hpp"
#include "corun/detail/wire.hpp"

namespace corun {

namespace detail {
using exception_encoder = void (*)(const std::exception& e, wire::writer& out);
using exception_decoder = std::exception_ptr (*)(wire::reader& in);
CORUN_API void register_exception_type(const std::type_info& type, exception_encoder encode,
                                       exception_decoder decode);
}  // namespace detail

/// Makes an exception of type `E` thrown by a task in a worker process reach
/// the awaiting coroutine as an `E`, with its state, instead of as a
/// `corun::remote_error`.
///
/// The standard exception types need no registration: they all come back as
/// themselves (`std::system_error` and `std::filesystem::filesystem_error`
/// with their code, category and paths). Only the exact registered type
/// matches: a type derived from `E` must be registered too.
///
/// `E` must derive from `std::exception`, be default-constructible and have a
/// cereal `serialize` (or `save`/`load`) function that saves everything a
/// reader needs, the message included. Register it before the pool is made
/// (workers are forked then, and see the registrations made so far), for
/// example first thing in `main`:
///
/// @code
/// struct parse_error : std::runtime_error {
///     int line = 0;
///     explicit parse_error(const std::string& what = "", int l = 0) : std::runtime_error(what), line(l) {}
///     template <class A> void save(A& a) const { a(std::string(what()), line); }
///     template <class A> void load(A& a) { std::string w; int l; a(w, l); *this = parse_error(w, l); }
/// };
/// int main() { corun::register_exception<parse_error>(); return corun::run(app()); }
/// @endcode
template <class E>
void register_exception() {
    static_assert(std::is_base_of_v<std::exception, E>,
                  "corun::register_exception: E must derive from std::exception");
    static_assert(std::is_default_constructible_v<E> && detail::wire::is_cereal<E>,
                  "corun::register_exception: E must be default-constructible and have a cereal serialize "
                  "(or save/load) function");
    detail::register_exception_type(
        typeid(E),
        [](const std::exception& e, detail::wire::writer& out) {
            detail::wire::put(out, static_cast<const E&>(e));
        },
        [](detail::wire::reader& in) { return std::make_exception_ptr(detail::wire::get<E>(in)); });
}

}  // namespace corun
