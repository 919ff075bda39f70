#include "corun/http/error.hpp"

#include <string>

namespace corun::http {

std::string_view to_string(error_kind kind) noexcept {
    switch (kind) {
        case error_kind::url:
            return "url";
        case error_kind::request:
            return "request";
        case error_kind::proxy:
            return "proxy";
        case error_kind::resolve:
            return "resolve";
        case error_kind::connect:
            return "connect";
        case error_kind::tls:
            return "tls";
        case error_kind::timeout:
            return "timeout";
        case error_kind::protocol:
            return "protocol";
        case error_kind::too_large:
            return "too_large";
        case error_kind::redirects:
            return "redirects";
        case error_kind::status:
            return "status";
    }
    return "unknown";
}

namespace {
std::string describe(error_kind kind, const std::string& url, std::string_view detail) {
    std::string s(to_string(kind));
    s += " error for ";
    s += url.empty() ? std::string("(no URL)") : url;
    s += ": ";
    s += detail;
    return s;
}
}  // namespace

error::error(error_kind kind, std::string url, std::string_view detail)
    : std::runtime_error(describe(kind, url, detail)), m_kind(kind), m_url(std::move(url)) {}

}  // namespace corun::http
