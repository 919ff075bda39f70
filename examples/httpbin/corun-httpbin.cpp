// corun-httpbin: httpbin.org's routes served on loopback, over HTTP and HTTPS,
// with an optional added latency standing in for an internet round trip.
//
//   corun-httpbin --port 8080 --tls-port 8443 --write-cert /tmp/httpbin.pem --latency 100
//   curl --cacert /tmp/httpbin.pem https://localhost:8443/get
#include <charconv>
#include <csignal>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>

#include "httpbin.hpp"

namespace {

constexpr std::string_view usage = R"(usage: corun-httpbin [options]
Serves httpbin.org's routes (/bytes/N, /stream-bytes/N, /delay/S, /status/C,
/redirect/N, /redirect-to, /get, /anything, /drip) until SIGINT or SIGTERM.

  --address A       address to listen on (default 127.0.0.1)
  --port P          HTTP port (default 8080; 0 picks a free one)
  --tls-port P      also serve HTTPS on this port
  --cert FILE       PEM certificate for HTTPS (with --key); by default a
  --key FILE          self-signed one is made at start-up
  --write-cert FILE write the HTTPS certificate in use there, for curl --cacert
  --latency MS      wait MS milliseconds before every response
  --help            this text
)";

struct usage_error {
    std::string message;
};

struct settings {
    httpbin::options http = {.port = 8080};
    std::optional<std::uint16_t> tls_port = std::nullopt;
    std::string cert_file = {};
    std::string key_file = {};
    std::string write_cert = {};
    bool help = false;
};

template <class T>
T parse_number(std::string_view flag, std::string_view text, T max) {
    unsigned long long v = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
    if (ec != std::errc() || end != text.data() + text.size() || v > max)
        throw usage_error{std::string(flag) + " wants a number from 0 to " + std::to_string(max) + ", not '" +
                          std::string(text) + "'"};
    return static_cast<T>(v);
}

settings parse(const std::vector<std::string_view>& args) {
    settings s;
    for (std::size_t i = 0; i < args.size(); ++i) {
        std::string_view flag = args[i];
        if (flag == "--help" || flag == "-h") {
            s.help = true;
            continue;
        }
        if (i + 1 == args.size()) {
            bool known = flag == "--address" || flag == "--port" || flag == "--tls-port" ||
                         flag == "--cert" || flag == "--key" || flag == "--write-cert" || flag == "--latency";
            throw usage_error{known ? std::string(flag) + " wants a value"
                                    : "unknown option " + std::string(flag)};
        }
        std::string_view value = args[++i];
        if (flag == "--address")
            s.http.address = value;
        else if (flag == "--port")
            s.http.port = parse_number<std::uint16_t>(flag, value, 65535);
        else if (flag == "--tls-port")
            s.tls_port = parse_number<std::uint16_t>(flag, value, 65535);
        else if (flag == "--cert")
            s.cert_file = value;
        else if (flag == "--key")
            s.key_file = value;
        else if (flag == "--write-cert")
            s.write_cert = value;
        else if (flag == "--latency")
            s.http.latency = std::chrono::milliseconds(parse_number<unsigned>(flag, value, 3'600'000));
        else
            throw usage_error{"unknown option " + std::string(flag)};
    }
    if (s.cert_file.empty() != s.key_file.empty()) throw usage_error{"--cert and --key go together"};
    if (!s.tls_port && (!s.cert_file.empty() || !s.write_cert.empty()))
        throw usage_error{"--cert, --key and --write-cert need --tls-port"};
    return s;
}

}  // namespace

int main(int argc, char** argv) {
    settings s;
    try {
        s = parse(std::vector<std::string_view>(argv + 1, argv + argc));
    } catch (const usage_error& e) {
        std::cerr << "corun-httpbin: " << e.message << " (see --help)\n";
        return 2;
    }
    if (s.help) {
        std::cout << usage;
        return 0;
    }
    try {
        boost::asio::io_context io{1};
        std::vector<std::unique_ptr<httpbin::server>> servers;
        servers.push_back(std::make_unique<httpbin::server>(io.get_executor(), s.http));
        if (s.tls_port) {
            httpbin::options tls = s.http;
            tls.port = *s.tls_port;
            tls.tls = true;
            tls.cert_file = s.cert_file;
            tls.key_file = s.key_file;
            tls.write_cert = s.write_cert;
            servers.push_back(std::make_unique<httpbin::server>(io.get_executor(), tls));
        }
        for (const auto& srv : servers) std::cout << "serving " << srv->base_url() << std::endl;

        boost::asio::signal_set signals(io, SIGINT, SIGTERM);
        signals.async_wait([&](const boost::system::error_code&, int) {
            for (const auto& srv : servers) srv->stop();
        });
        io.run();
        return 0;
    } catch (const std::exception& e) {
        std::cerr << "corun-httpbin: " << e.what() << "\n";
        return 1;
    }
}
