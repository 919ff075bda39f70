// How a task's exception crosses from a worker to the parent: every standard
// type as itself (with its code, category and paths where it has them),
// registered user types through cereal, anything else as remote_error.
#include "corun/remote_exception.hpp"

#include <cxxabi.h>

#include <any>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <future>
#include <ios>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <regex>
#include <stdexcept>
#include <string>
#include <system_error>
#include <typeinfo>
#include <variant>

#include "corun/pool_errors.hpp"
#include "failure.hpp"

namespace corun {

value_too_large::value_too_large(const std::string& what_was_large, std::uint64_t size, std::uint64_t limit)
    : std::length_error("corun: " + what_was_large + " is " + std::to_string(size) +
                        " bytes, over the pool's max_frame_size of " + std::to_string(limit) + " bytes"),
      m_size(size),
      m_limit(limit) {}

namespace detail {

namespace {

std::string demangle(const char* name) {
    int status = 0;
    std::unique_ptr<char, void (*)(void*)> d(abi::__cxa_demangle(name, nullptr, nullptr, &status), std::free);
    return status == 0 && d ? d.get() : name;
}

struct registered_type {
    exception_encoder encode;
    exception_decoder decode;
};

/// Registered user types by mangled name: the same in every process running
/// the same binaries.
struct registry {
    std::mutex lock;
    std::map<std::string, registered_type, std::less<>> types;
};

registry& exception_registry() {
    static registry r;
    return r;
}

std::optional<registered_type> find_registered(std::string_view name) {
    auto& r = exception_registry();
    std::lock_guard guard(r.lock);
    auto it = r.types.find(name);
    if (it == r.types.end()) return std::nullopt;
    return it->second;
}

enum failure_kind : std::uint8_t {
    other,
    exception,
    logic_error,
    invalid_argument,
    domain_error,
    length_error,
    out_of_range,
    future_error,
    runtime_error,
    range_error,
    overflow_error,
    underflow_error,
    regex_error,
    system_error,
    ios_failure,
    filesystem_error,
    bad_alloc,
    bad_array_new_length,
    bad_cast,
    bad_any_cast,
    bad_typeid,
    bad_exception,
    bad_function_call,
    bad_weak_ptr,
    bad_optional_access,
    bad_variant_access,
    value_too_large_error,
    registered,
    // corun's own, re-sent as they are by an MPI host agent.
    remote_error_kind,
    worker_crashed_kind,
    pool_closed_kind,
};

/// Error categories that mean the same in every process.
enum category_id : std::uint8_t { generic, system, iostream, future };

std::optional<category_id> category_of(const std::error_code& ec) {
    const auto& c = ec.category();
    if (c == std::generic_category()) return generic;
    if (c == std::system_category()) return system;
    if (c == std::iostream_category()) return iostream;
    if (c == std::future_category()) return future;
    return std::nullopt;
}

std::error_code make_code(std::int32_t value, std::uint8_t category) {
    switch (category) {
        case system:
            return {value, std::system_category()};
        case iostream:
            return {value, std::iostream_category()};
        case future:
            return {value, std::future_category()};
        default:
            return {value, std::generic_category()};
    }
}

/// The argument a `what()` was built from: `make(arg).what()` must give
/// `what` back, or the whole `what` is the best there is.
template <class Make>
std::string original_argument(const std::string& what, std::string_view prefix, std::string_view suffix,
                              Make make) {
    if (what.size() >= prefix.size() + suffix.size() && what.starts_with(prefix) && what.ends_with(suffix)) {
        std::string arg = what.substr(prefix.size(), what.size() - prefix.size() - suffix.size());
        if (make(arg).what() == what) return arg;
    }
    return what;
}

/// A filesystem_error made as the library makes them: with no path, one or
/// two (each form words its `what()` differently).
std::filesystem::filesystem_error make_filesystem_error(const std::string& arg, int paths,
                                                        const std::filesystem::path& p1,
                                                        const std::filesystem::path& p2, std::error_code ec) {
    if (paths == 0) return {arg, ec};
    if (paths == 1) return {arg, p1, ec};
    return {arg, p1, p2, ec};
}

/// Is `e` the library's own type derived from a standard one (libstdc++
/// throws `std::__ios_failure` for `std::ios_base::failure`), rather than the
/// user's?
template <class Standard>
bool library_variant_of(const std::exception& e) {
    return dynamic_cast<const Standard*>(&e) && demangle(typeid(e).name()).starts_with("std::");
}

/// The standard type an exception stands for: its own, or, for what
/// `std::throw_with_nested(T)` throws (libstdc++'s `_Nested_exception<T>`),
/// `T`, with `nested` set.
const std::type_info& face_of(const std::exception& e, bool& nested) {
    static const std::type_info* const known[] = {
        &typeid(std::exception),
        &typeid(std::logic_error),
        &typeid(std::invalid_argument),
        &typeid(std::domain_error),
        &typeid(std::length_error),
        &typeid(std::out_of_range),
        &typeid(std::runtime_error),
        &typeid(std::range_error),
        &typeid(std::overflow_error),
        &typeid(std::underflow_error),
        &typeid(std::system_error),
        &typeid(std::ios_base::failure),
        &typeid(std::future_error),
        &typeid(std::regex_error),
        &typeid(std::bad_alloc),
        &typeid(std::bad_cast),
        &typeid(std::bad_function_call),
        &typeid(corun::value_too_large),
        &typeid(std::filesystem::filesystem_error),
    };
    const std::type_info& t = typeid(e);
    const std::string name = demangle(t.name());
    constexpr std::string_view prefix = "std::_Nested_exception<";
    if (!name.starts_with(prefix) || !dynamic_cast<const std::nested_exception*>(&e)) return t;
    const std::string inner = name.substr(prefix.size(), name.size() - prefix.size() - 1);
    for (const std::type_info* k : known) {
        if (demangle(k->name()) == inner) {
            nested = true;
            return *k;
        }
    }
    return t;
}

/// Kind-specific fields of a standard exception; false when the exception is
/// not of a type this side can rebuild exactly.
bool put_standard(wire::writer& w, const std::exception& e, const std::type_info& t, failure_kind& kind) {
    auto is = [&t](const std::type_info& u) { return t == u; };
    const bool is_ios_failure =
        is(typeid(std::ios_base::failure)) || library_variant_of<std::ios_base::failure>(e);
    if (is(typeid(std::system_error)) || is_ios_failure) {
        const auto& se = static_cast<const std::system_error&>(e);
        const auto category = category_of(se.code());
        if (!category) return false;
        kind = is_ios_failure ? ios_failure : system_error;
        const std::string what = se.what();
        std::string arg;
        if (kind == system_error) {
            arg = what == se.code().message()
                      ? std::string()
                      : original_argument(what, "", ": " + se.code().message(), [&](const std::string& a) {
                            return std::system_error(se.code(), a);
                        });
        } else {
            arg = original_argument(what, "", ": " + se.code().message(), [&](const std::string& a) {
                return std::ios_base::failure(a, se.code());
            });
        }
        wire::put(w, static_cast<std::uint8_t>(*category));
        wire::put(w, static_cast<std::int32_t>(se.code().value()));
        wire::put(w, arg);
        wire::put(w, static_cast<std::uint8_t>(what == se.code().message() ? 1 : 0));
        return true;
    }
    if (is(typeid(std::filesystem::filesystem_error))) {
        const auto& fe = static_cast<const std::filesystem::filesystem_error&>(e);
        const auto category = category_of(fe.code());
        if (!category) return false;
        kind = filesystem_error;
        // Which constructor made it shows only in its what(): find the one
        // that makes it again.
        std::string arg = fe.what();
        std::uint8_t paths = 2;
        for (int n : {2, 1, 0}) {
            std::string suffix = ": " + fe.code().message();
            if (n >= 1) suffix += " [" + fe.path1().native() + "]";
            if (n == 2) suffix += " [" + fe.path2().native() + "]";
            auto make = [&](const std::string& a) {
                return make_filesystem_error(a, n, fe.path1(), fe.path2(), fe.code());
            };
            const std::string candidate = original_argument(fe.what(), "filesystem error: ", suffix, make);
            if (make(candidate).what() == std::string_view(fe.what())) {
                arg = candidate;
                paths = static_cast<std::uint8_t>(n);
                break;
            }
        }
        wire::put(w, static_cast<std::uint8_t>(*category));
        wire::put(w, static_cast<std::int32_t>(fe.code().value()));
        wire::put(w, arg);
        wire::put(w, paths);
        wire::put(w, fe.path1().native());
        wire::put(w, fe.path2().native());
        return true;
    }
    if (is(typeid(std::future_error))) {
        kind = future_error;
        wire::put(w, static_cast<std::int32_t>(static_cast<const std::future_error&>(e).code().value()));
        return true;
    }
    if (is(typeid(std::regex_error))) {
        kind = regex_error;
        wire::put(w, static_cast<std::int32_t>(static_cast<const std::regex_error&>(e).code()));
        return true;
    }
    if (is(typeid(corun::remote_error))) {
        const auto& r = static_cast<const corun::remote_error&>(e);
        kind = remote_error_kind;
        wire::put(w, r.type_name());
        wire::put(w, r.message());
        wire::put(w, static_cast<std::int32_t>(r.pid()));
        return true;
    }
    if (is(typeid(corun::worker_crashed))) {
        const auto& c = static_cast<const corun::worker_crashed&>(e);
        kind = worker_crashed_kind;
        for (int v : {c.pid(), c.signal(), c.exit_code(), c.rank()})
            wire::put(w, static_cast<std::int32_t>(v));
        wire::put(w, c.host());
        return true;
    }
    if (is(typeid(corun::pool_closed))) {
        kind = pool_closed_kind;
        wire::put(w, static_cast<const corun::pool_closed&>(e).reason());
        return true;
    }
    if (is(typeid(corun::value_too_large))) {
        const auto& v = static_cast<const corun::value_too_large&>(e);
        kind = value_too_large_error;
        const std::string tail = " is " + std::to_string(v.size()) +
                                 " bytes, over the pool's max_frame_size of " + std::to_string(v.limit()) +
                                 " bytes";
        wire::put(w, original_argument(v.what(), "corun: ", tail, [&](const std::string& a) {
                      return corun::value_too_large(a, v.size(), v.limit());
                  }));
        wire::put(w, v.size());
        wire::put(w, v.limit());
        return true;
    }
    // Types whose state is their message, or nothing at all.
    static const std::pair<const std::type_info*, failure_kind> plain[] = {
        {&typeid(std::exception), exception},
        {&typeid(std::logic_error), logic_error},
        {&typeid(std::invalid_argument), invalid_argument},
        {&typeid(std::domain_error), domain_error},
        {&typeid(std::length_error), length_error},
        {&typeid(std::out_of_range), out_of_range},
        {&typeid(std::runtime_error), runtime_error},
        {&typeid(std::range_error), range_error},
        {&typeid(std::overflow_error), overflow_error},
        {&typeid(std::underflow_error), underflow_error},
        {&typeid(std::bad_alloc), bad_alloc},
        {&typeid(std::bad_array_new_length), bad_array_new_length},
        {&typeid(std::bad_cast), bad_cast},
        {&typeid(std::bad_any_cast), bad_any_cast},
        {&typeid(std::bad_typeid), bad_typeid},
        {&typeid(std::bad_exception), bad_exception},
        {&typeid(std::bad_function_call), bad_function_call},
        {&typeid(std::bad_weak_ptr), bad_weak_ptr},
        {&typeid(std::bad_optional_access), bad_optional_access},
        {&typeid(std::bad_variant_access), bad_variant_access},
    };
    for (const auto& [type, k] : plain) {
        if (t == *type) {
            kind = k;
            return true;
        }
    }
    return false;
}

/// Throws `e`, or, when it had one (`std::throw_with_nested`), `e` with
/// `nested` nested in it.
template <class E>
[[noreturn]] void raise(const std::exception_ptr& nested, E e) {
    if (!nested) throw std::move(e);
    try {
        std::rethrow_exception(nested);
    } catch (...) {
        std::throw_with_nested(std::move(e));
    }
}

/// std::bad_variant_access can only be made with its default message; the
/// standard library's own throws give one of two others, made again here the
/// same way.
[[noreturn]] void throw_bad_variant_access(const std::string& what, const std::exception_ptr& nested) {
    struct throws_on_copy {
        throws_on_copy() = default;
        throws_on_copy(const throws_on_copy&) { throw 0; }
    };
    if (what == std::bad_variant_access().what()) raise(nested, std::bad_variant_access());
    std::variant<int, throws_on_copy> v;
    if (what.find("valueless") != std::string::npos) {
        try {
            const throws_on_copy source;
            v.emplace<1>(source);
        } catch (int) {
        }
        try {
            std::visit([](auto&) {}, v);
        } catch (const std::bad_variant_access& e) {
            raise(nested, e);
        }
    }
    try {
        (void)std::get<1>(v);
    } catch (const std::bad_variant_access& e) {
        raise(nested, e);
    }
    raise(nested, std::bad_variant_access());
}

/// Throws the standard exception of `kind` whose message is `what`, reading
/// its other fields from `r`.
[[noreturn]] void throw_standard(failure_kind kind, const std::string& what, wire::reader& r,
                                 const std::exception_ptr& nested) {
    switch (kind) {
        case exception:
            raise(nested, std::exception());
        case logic_error:
            raise(nested, std::logic_error(what));
        case invalid_argument:
            raise(nested, std::invalid_argument(what));
        case domain_error:
            raise(nested, std::domain_error(what));
        case length_error:
            raise(nested, std::length_error(what));
        case out_of_range:
            raise(nested, std::out_of_range(what));
        case runtime_error:
            raise(nested, std::runtime_error(what));
        case range_error:
            raise(nested, std::range_error(what));
        case overflow_error:
            raise(nested, std::overflow_error(what));
        case underflow_error:
            raise(nested, std::underflow_error(what));
        case bad_alloc:
            raise(nested, std::bad_alloc());
        case bad_array_new_length:
            raise(nested, std::bad_array_new_length());
        case bad_cast:
            raise(nested, std::bad_cast());
        case bad_any_cast:
            raise(nested, std::bad_any_cast());
        case bad_typeid:
            raise(nested, std::bad_typeid());
        case bad_exception:
            raise(nested, std::bad_exception());
        case bad_function_call:
            raise(nested, std::bad_function_call());
        case bad_weak_ptr:
            raise(nested, std::bad_weak_ptr());
        case bad_optional_access:
            raise(nested, std::bad_optional_access());
        case bad_variant_access:
            throw_bad_variant_access(what, nested);
        case future_error:
            raise(nested, std::future_error(static_cast<std::future_errc>(wire::get<std::int32_t>(r))));
        case regex_error:
            raise(nested, std::regex_error(
                              static_cast<std::regex_constants::error_type>(wire::get<std::int32_t>(r))));
        case system_error:
        case ios_failure: {
            const auto category = wire::get<std::uint8_t>(r);
            const auto code = make_code(wire::get<std::int32_t>(r), category);
            const auto arg = wire::get<std::string>(r);
            const bool bare = wire::get<std::uint8_t>(r) != 0;
            if (kind == ios_failure) raise(nested, std::ios_base::failure(arg, code));
            if (bare) raise(nested, std::system_error(code));
            raise(nested, std::system_error(code, arg));
        }
        case filesystem_error: {
            const auto category = wire::get<std::uint8_t>(r);
            const auto code = make_code(wire::get<std::int32_t>(r), category);
            const auto arg = wire::get<std::string>(r);
            const auto paths = wire::get<std::uint8_t>(r);
            const std::filesystem::path p1(wire::get<std::string>(r));
            const std::filesystem::path p2(wire::get<std::string>(r));
            raise(nested, make_filesystem_error(arg, paths, p1, p2, code));
        }
        default:
            raise(nested, std::runtime_error("corun: a worker sent an exception of unknown kind " +
                                             std::to_string(kind)));
    }
}

}  // namespace

void register_exception_type(const std::type_info& type, exception_encoder encode, exception_decoder decode) {
    auto& r = exception_registry();
    std::lock_guard guard(r.lock);
    r.types.insert_or_assign(type.name(), registered_type{encode, decode});
}

void encode_failure(std::string& out, std::exception_ptr error) {
    failure_kind kind = other;
    std::string type, what, registered_name, inner;
    std::string fields;
    wire::writer extra(fields);
    bool nested = false;
    try {
        std::rethrow_exception(error);
    } catch (const std::exception& e) {
        const std::type_info& t = typeid(e);
        type = demangle(t.name());
        what = e.what();
        if (auto entry = find_registered(t.name())) {
            try {
                entry->encode(e, extra);
                kind = registered;
                registered_name = t.name();
            } catch (...) {
                fields.clear();  // it could not be saved: it travels as remote_error
            }
        } else if (!put_standard(extra, e, face_of(e, nested), kind)) {
            fields.clear();
            kind = other;
            nested = false;
        }
        if (nested) {
            if (const auto* n = dynamic_cast<const std::nested_exception*>(&e); n && n->nested_ptr())
                encode_failure(inner, n->nested_ptr());
            else
                nested = false;
        }
    } catch (...) {
        const std::type_info* t = abi::__cxa_current_exception_type();
        type = t ? demangle(t->name()) : "unknown";
    }
    wire::writer w(out);
    wire::put(w, static_cast<std::uint8_t>(kind));
    wire::put(w, type);
    wire::put(w, what);
    wire::put(w, registered_name);
    wire::put(w, static_cast<std::uint8_t>(nested));
    if (nested) wire::put(w, inner);
    w.bytes(fields.data(), fields.size());
}

std::exception_ptr decode_failure(std::string_view payload, int pid) {
    try {
        wire::reader r(payload);
        const auto kind = static_cast<failure_kind>(wire::get<std::uint8_t>(r));
        auto type = wire::get<std::string>(r);
        auto what = wire::get<std::string>(r);
        const auto registered_name = wire::get<std::string>(r);
        // What std::throw_with_nested put inside it, made first.
        std::exception_ptr nested;
        if (wire::get<std::uint8_t>(r) != 0) nested = decode_failure(wire::get<std::string>(r), pid);
        switch (kind) {
            case other:
                return std::make_exception_ptr(remote_error(std::move(type), std::move(what), pid));
            case registered:
                if (auto entry = find_registered(registered_name)) return entry->decode(r);
                return std::make_exception_ptr(remote_error(std::move(type), std::move(what), pid));
            case value_too_large_error: {
                const auto what_was_large = wire::get<std::string>(r);
                const auto size = wire::get<std::uint64_t>(r);
                const auto limit = wire::get<std::uint64_t>(r);
                return std::make_exception_ptr(corun::value_too_large(what_was_large, size, limit));
            }
            case remote_error_kind: {
                auto remote_type = wire::get<std::string>(r);
                auto message = wire::get<std::string>(r);
                const auto remote_pid = wire::get<std::int32_t>(r);
                return std::make_exception_ptr(
                    remote_error(std::move(remote_type), std::move(message), remote_pid));
            }
            case worker_crashed_kind: {
                std::int32_t v[4];
                for (auto& x : v) x = wire::get<std::int32_t>(r);
                auto host = wire::get<std::string>(r);
                return std::make_exception_ptr(worker_crashed(v[0], v[1], v[2], what, std::move(host), v[3]));
            }
            case pool_closed_kind:
                return std::make_exception_ptr(pool_closed(wire::get<std::string>(r)));
            default:
                throw_standard(kind, what, r, nested);
        }
    } catch (...) {
        return std::current_exception();
    }
}

}  // namespace detail
}  // namespace corun
