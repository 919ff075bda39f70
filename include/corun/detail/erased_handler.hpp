// A move-only, type-erased completion handler that is always completed by posting.
#pragma once

#include <memory>
#include <tuple>
#include <utility>

#include <boost/asio/append.hpp>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/post.hpp>

namespace corun::detail {

/// Holds any completion handler for `void(Args...)`, so a non-template waiter
/// queue can keep it. Written here rather than using Asio's
/// `any_completion_handler` because Boost 1.81's erased executor cannot be
/// posted to (it lacks `blocking.never`); erasing the posting itself keeps the
/// concrete handler's executor and allocator in charge.
template <class... Args>
class erased_handler {
public:
    erased_handler() = default;
    template <class Handler>
    explicit erased_handler(Handler h) : m_impl(std::make_unique<impl<Handler>>(std::move(h))) {}

    explicit operator bool() const noexcept { return static_cast<bool>(m_impl); }

    /// The cancellation slot the handler's owner associated with it.
    boost::asio::cancellation_slot slot() const noexcept { return m_impl->slot(); }

    /// Posts the handler with `args` to its own executor; the holder becomes empty.
    void post(Args... args) { std::exchange(m_impl, nullptr)->post(std::move(args)...); }

private:
    struct base {
        virtual ~base() = default;
        virtual boost::asio::cancellation_slot slot() const noexcept = 0;
        virtual void post(Args... args) = 0;
    };
    template <class Handler>
    struct impl final : base {
        explicit impl(Handler h) : handler(std::move(h)) {}
        boost::asio::cancellation_slot slot() const noexcept override {
            return boost::asio::get_associated_cancellation_slot(handler);
        }
        void post(Args... args) override {
            boost::asio::post(boost::asio::append(std::move(handler), std::move(args)...));
        }
        Handler handler;
    };
    std::unique_ptr<base> m_impl;
};

}  // namespace corun::detail
