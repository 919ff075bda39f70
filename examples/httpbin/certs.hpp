// httpbin::certs — keys and X.509 certificates for loopback TLS: the server's
// start-up self-signed certificate and the test suite's CA-signed ones come
// from this one piece of code. OpenSSL stays inside certs.cpp.
#pragma once

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

namespace httpbin::certs {

enum class key_type { ec_p256, rsa_2048 };

/// A private key and its certificate, both PEM.
struct identity {
    std::string key_pem = {};   // PKCS#8 "PRIVATE KEY"
    std::string cert_pem = {};  // "CERTIFICATE"
};

struct cert_options {
    std::string common_name = "localhost";
    /// subjectAltName entries; host-name verification looks only at these.
    std::vector<std::string> dns_names = {};
    std::vector<std::string> ip_addresses = {};  // "127.0.0.1", "::1"
    /// basicConstraints CA:TRUE and keyUsage keyCertSign, for a test CA.
    bool is_ca = false;
    /// Validity, as offsets from now: both negative makes an already expired certificate.
    std::chrono::seconds not_before{-std::chrono::hours(1)};
    std::chrono::seconds not_after{std::chrono::hours(24 * 3650)};
    key_type key = key_type::ec_p256;
};

/// A new key and a certificate for it signed by that same key.
/// Throws std::runtime_error carrying OpenSSL's error text on any failure.
identity make_self_signed(const cert_options& opts);

/// A new key and a certificate for it signed by `issuer` (a CA made by
/// make_self_signed with `is_ca`). Throws std::runtime_error.
identity make_signed(const cert_options& opts, const identity& issuer);

/// Writes `contents` to `path`, replacing it. Throws std::runtime_error naming the path.
void write_file(const std::string& path, std::string_view contents);

/// The whole of the file at `path`. Throws std::runtime_error naming the path.
std::string read_file(const std::string& path);

}  // namespace httpbin::certs
