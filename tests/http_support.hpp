// Helpers shared by the HTTP test suites.
#pragma once

#include <string>
#include <utility>

#include "corun/http/client.hpp"

namespace corun_test {

/// A file the test-certificate build step wrote (ca.pem, server.pem …).
inline std::string cert_path(const std::string& name) {
    return std::string(CORUN_TEST_CERT_DIR) + "/" + name;
}

/// The name of an HTTP error's kind ("timeout" …), for checks that print it.
inline std::string kind_name(const corun::http::error& e) {
    return std::string(corun::http::to_string(e.kind()));
}

inline bool contains(const std::string& haystack, const std::string& needle) {
    return haystack.find(needle) != std::string::npos;
}

/// One GET on a client of its own, made with `options`.
inline corun::awaitable<corun::http::response> get_once(corun::http::client_options options,
                                                        std::string url) {
    corun::executor ex = co_await corun::this_executor();
    corun::http::client client{ex, std::move(options)};
    co_return co_await client.get(std::move(url));
}

}  // namespace corun_test
