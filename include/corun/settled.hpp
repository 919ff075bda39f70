// corun::settled — a child's outcome, value or exception, as a value.
#pragma once

#include <exception>
#include <type_traits>
#include <utility>
#include <variant>

namespace corun {

/// The outcome of one child of `gather_settled` or `as_completed`: either the
/// value it returned or the exception it threw. Asking for the value of a
/// failed outcome rethrows the child's exception, as Python's `Future.result()`.
template <class T>
class settled {
public:
    using value_type = T;

    settled(T value) : m_state(std::in_place_index<0>, std::move(value)) {}
    settled(std::exception_ptr error) : m_state(std::in_place_index<1>, std::move(error)) {}

    bool has_value() const noexcept { return m_state.index() == 0; }
    explicit operator bool() const noexcept { return has_value(); }

    /// The value; rethrows the child's exception if it failed.
    T& value() & {
        rethrow_if_failed();
        return std::get<0>(m_state);
    }
    const T& value() const& {
        rethrow_if_failed();
        return std::get<0>(m_state);
    }
    T&& value() && {
        rethrow_if_failed();
        return std::get<0>(std::move(m_state));
    }

    /// The child's exception, or null if it returned a value.
    std::exception_ptr error() const noexcept { return has_value() ? nullptr : std::get<1>(m_state); }

private:
    void rethrow_if_failed() const {
        if (!has_value()) std::rethrow_exception(std::get<1>(m_state));
    }
    std::variant<T, std::exception_ptr> m_state;
};

/// The outcome of a child that returns nothing: success, or its exception.
template <>
class settled<void> {
public:
    using value_type = void;

    settled() = default;
    settled(std::exception_ptr error) : m_error(std::move(error)) {}

    bool has_value() const noexcept { return !m_error; }
    explicit operator bool() const noexcept { return has_value(); }
    void value() const {
        if (m_error) std::rethrow_exception(m_error);
    }
    std::exception_ptr error() const noexcept { return m_error; }

private:
    std::exception_ptr m_error;
};

}  // namespace corun
