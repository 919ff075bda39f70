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

std::string path_suffix(const std::filesystem::path& p1, const std::filesystem::path& p2) {
    std::string s;
    if (!p1.empty()) s += " [" + p1.native() + "]";
    if (!p2.empty()) s += " [" + p2.native() + "]";
    return s;
}

/// Kind-specific fields of a standard exception; false when the exception is
/// not of a type this side can rebuild exactly.
bool put_standard(wire::writer& w, const std::exception& e, failure_kind& kind) {
    const std::type_info& t = typeid(e);
    auto is = [&t](const std::type_info& u) { return t == u; };
    if (is(typeid(std::system_error)) || is(typeid(std::ios_base::failure))) {
        const auto& se = static_cast<const std::system_error&>(e);
        const auto category = category_of(se.code());
        if (!category) return false;
        kind = is(typeid(std::system_error)) ? system_error : ios_failure;
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
        const std::string arg = original_argument(
            fe.what(), "filesystem error: ", ": " + fe.code().message() + path_suffix(fe.path1(), fe.path2()),
            [&](const std::string& a) {
                return std::filesystem::filesystem_error(a, fe.path1(), fe.path2(), fe.code());
            });
        wire::put(w, static_cast<std::uint8_t>(*category));
        wire::put(w, static_cast<std::int32_t>(fe.code().value()));
        wire::put(w, arg);
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

/// std::bad_variant_access can only be made with its default message; the
/// standard library's own throws give one of two others, made again here the
/// same way.
[[noreturn]] void throw_bad_variant_access(const std::string& what) {
    struct throws_on_copy {
        throws_on_copy() = default;
        throws_on_copy(const throws_on_copy&) { throw 0; }
    };
    if (what == std::bad_variant_access().what()) throw std::bad_variant_access();
    std::variant<int, throws_on_copy> v;
    if (what.find("valueless") != std::string::npos) {
        try {
            const throws_on_copy source;
            v.emplace<1>(source);
        } catch (int) {
        }
        std::visit([](auto&) {}, v);
    }
    (void)std::get<1>(v);
    throw std::bad_variant_access();
}

/// Throws the standard exception of `kind` whose message is `what`, reading
/// its other fields from `r`.
[[noreturn]] void throw_standard(failure_kind kind, const std::string& what, wire::reader& r) {
    switch (kind) {
        case exception:
            throw std::exception();
        case logic_error:
            throw std::logic_error(what);
        case invalid_argument:
            throw std::invalid_argument(what);
        case domain_error:
            throw std::domain_error(what);
        case length_error:
            throw std::length_error(what);
        case out_of_range:
            throw std::out_of_range(what);
        case runtime_error:
            throw std::runtime_error(what);
        case range_error:
            throw std::range_error(what);
        case overflow_error:
            throw std::overflow_error(what);
        case underflow_error:
            throw std::underflow_error(what);
        case bad_alloc:
            throw std::bad_alloc();
        case bad_array_new_length:
            throw std::bad_array_new_length();
        case bad_cast:
            throw std::bad_cast();
        case bad_any_cast:
            throw std::bad_any_cast();
        case bad_typeid:
            throw std::bad_typeid();
        case bad_exception:
            throw std::bad_exception();
        case bad_function_call:
            throw std::bad_function_call();
        case bad_weak_ptr:
            throw std::bad_weak_ptr();
        case bad_optional_access:
            throw std::bad_optional_access();
        case bad_variant_access:
            throw_bad_variant_access(what);
        case future_error:
            throw std::future_error(static_cast<std::future_errc>(wire::get<std::int32_t>(r)));
        case regex_error:
            throw std::regex_error(static_cast<std::regex_constants::error_type>(wire::get<std::int32_t>(r)));
        case system_error:
        case ios_failure: {
            const auto category = wire::get<std::uint8_t>(r);
            const auto code = make_code(wire::get<std::int32_t>(r), category);
            const auto arg = wire::get<std::string>(r);
            const bool bare = wire::get<std::uint8_t>(r) != 0;
            if (kind == ios_failure) throw std::ios_base::failure(arg, code);
            if (bare) throw std::system_error(code);
            throw std::system_error(code, arg);
        }
        case filesystem_error: {
            const auto category = wire::get<std::uint8_t>(r);
            const auto code = make_code(wire::get<std::int32_t>(r), category);
            const auto arg = wire::get<std::string>(r);
            const std::filesystem::path p1(wire::get<std::string>(r));
            const std::filesystem::path p2(wire::get<std::string>(r));
            throw std::filesystem::filesystem_error(arg, p1, p2, code);
        }
        default:
            throw std::runtime_error("corun: a worker sent an exception of unknown kind " +
                                     std::to_string(kind));
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
    std::string type, what, registered_name;
    std::string fields;
    wire::writer extra(fields);
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
        } else if (!put_standard(extra, e, kind)) {
            fields.clear();
            kind = other;
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
    w.bytes(fields.data(), fields.size());
}

std::exception_ptr decode_failure(std::string_view payload, int pid) {
    try {
        wire::reader r(payload);
        const auto kind = static_cast<failure_kind>(wire::get<std::uint8_t>(r));
        auto type = wire::get<std::string>(r);
        auto what = wire::get<std::string>(r);
        const auto registered_name = wire::get<std::string>(r);
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
            default:
                throw_standard(kind, what, r);
        }
    } catch (...) {
        return std::current_exception();
    }
}

}  // namespace detail
}  // namespace corun
