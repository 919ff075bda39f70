#include "certs.hpp"

#include <cstdint>
#include <fstream>
#include <iterator>
#include <memory>
#include <stdexcept>

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

namespace httpbin::certs {

namespace {

template <class T, void (*Free)(T*)>
struct deleter {
    void operator()(T* p) const noexcept { Free(p); }
};
template <class T, void (*Free)(T*)>
using owned = std::unique_ptr<T, deleter<T, Free>>;

using pkey_ptr = owned<EVP_PKEY, EVP_PKEY_free>;
using x509_ptr = owned<X509, X509_free>;
using bio_ptr = owned<BIO, BIO_free_all>;
using bignum_ptr = owned<BIGNUM, BN_free>;
using extension_ptr = owned<X509_EXTENSION, X509_EXTENSION_free>;
using octets_ptr = owned<ASN1_OCTET_STRING, ASN1_OCTET_STRING_free>;
using ia5_ptr = owned<ASN1_IA5STRING, ASN1_IA5STRING_free>;

void free_general_names(GENERAL_NAMES* names) {
    GENERAL_NAMES_free(names);
}
void free_general_name(GENERAL_NAME* name) {
    GENERAL_NAME_free(name);
}
using general_names_ptr = owned<GENERAL_NAMES, free_general_names>;
using general_name_ptr = owned<GENERAL_NAME, free_general_name>;

/// Throws with `what` and every error OpenSSL has queued on this thread (which empties the queue).
[[noreturn]] void fail(const std::string& what) {
    std::string msg = "certs: " + what + " failed";
    char buf[256];
    const char* sep = ": ";
    while (unsigned long e = ERR_get_error()) {
        ERR_error_string_n(e, buf, sizeof buf);
        msg += sep;
        msg += buf;
        sep = "; ";
    }
    throw std::runtime_error(msg);
}

void check(int rc, const char* what) {
    if (rc <= 0) fail(what);
}
template <class T>
T* check(T* p, const char* what) {
    if (p == nullptr) fail(what);
    return p;
}

pkey_ptr generate_key(key_type type) {
    switch (type) {
        case key_type::ec_p256:
            return pkey_ptr(check(EVP_EC_gen("P-256"), "EVP_EC_gen(P-256)"));
        case key_type::rsa_2048:
            return pkey_ptr(check(EVP_RSA_gen(2048), "EVP_RSA_gen(2048)"));
    }
    throw std::runtime_error("certs: unknown key type");
}

/// A random positive 63-bit serial: distinct certificates from one CA must not share one.
void set_random_serial(X509* cert) {
    bignum_ptr bn(check(BN_new(), "BN_new"));
    check(BN_rand(bn.get(), 63, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY), "BN_rand");
    check(BN_to_ASN1_INTEGER(bn.get(), X509_get_serialNumber(cert)), "BN_to_ASN1_INTEGER");
}

void set_validity(X509* cert, const cert_options& opts) {
    check(X509_gmtime_adj(X509_getm_notBefore(cert), static_cast<long>(opts.not_before.count())),
          "X509_gmtime_adj(notBefore)");
    check(X509_gmtime_adj(X509_getm_notAfter(cert), static_cast<long>(opts.not_after.count())),
          "X509_gmtime_adj(notAfter)");
}

void set_subject(X509* cert, const cert_options& opts) {
    X509_NAME* name = check(X509_get_subject_name(cert), "X509_get_subject_name");
    const auto* cn = reinterpret_cast<const unsigned char*>(opts.common_name.c_str());
    check(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, cn, -1, -1, 0), "setting the common name");
}

/// Built as GENERAL_NAMEs rather than from a config string, so that no name can inject config syntax.
void add_subject_alt_names(X509* cert, const cert_options& opts) {
    if (opts.dns_names.empty() && opts.ip_addresses.empty()) return;
    general_names_ptr names(check(sk_GENERAL_NAME_new_null(), "sk_GENERAL_NAME_new_null"));
    auto push = [&](general_name_ptr name) {
        check(sk_GENERAL_NAME_push(names.get(), name.get()), "sk_GENERAL_NAME_push");
        name.release();
    };
    for (const auto& dns : opts.dns_names) {
        ia5_ptr text(check(ASN1_IA5STRING_new(), "ASN1_IA5STRING_new"));
        check(ASN1_STRING_set(text.get(), dns.data(), static_cast<int>(dns.size())), "ASN1_STRING_set");
        general_name_ptr name(check(GENERAL_NAME_new(), "GENERAL_NAME_new"));
        GENERAL_NAME_set0_value(name.get(), GEN_DNS, text.release());
        push(std::move(name));
    }
    for (const auto& ip : opts.ip_addresses) {
        octets_ptr octets(check(a2i_IPADDRESS(ip.c_str()), ("parsing the IP address '" + ip + "'").c_str()));
        general_name_ptr name(check(GENERAL_NAME_new(), "GENERAL_NAME_new"));
        GENERAL_NAME_set0_value(name.get(), GEN_IPADD, octets.release());
        push(std::move(name));
    }
    check(X509_add1_ext_i2d(cert, NID_subject_alt_name, names.get(), 0, X509V3_ADD_DEFAULT),
          "adding subjectAltName");
}

void add_extension(X509* cert, X509V3_CTX* ctx, int nid, const char* value) {
    extension_ptr ext(check(X509V3_EXT_conf_nid(nullptr, ctx, nid, value), OBJ_nid2sn(nid)));
    check(X509_add_ext(cert, ext.get(), -1), "X509_add_ext");
}

void add_extensions(X509* cert, X509* issuer, const cert_options& opts) {
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
    if (opts.is_ca) {
        add_extension(cert, &ctx, NID_basic_constraints, "critical,CA:TRUE");
        add_extension(cert, &ctx, NID_key_usage, "critical,keyCertSign,cRLSign");
    } else {
        add_extension(cert, &ctx, NID_basic_constraints, "critical,CA:FALSE");
        add_extension(cert, &ctx, NID_ext_key_usage, "serverAuth,clientAuth");
        // A self-signed leaf carries no keyUsage: OpenSSL would refuse it as its
        // own issuer (and so as a trust anchor given to --cacert) without keyCertSign.
        if (issuer != cert)
            add_extension(cert, &ctx, NID_key_usage, "critical,digitalSignature,keyEncipherment");
    }
    add_extension(cert, &ctx, NID_subject_key_identifier, "hash");
    if (issuer != cert) add_extension(cert, &ctx, NID_authority_key_identifier, "keyid:always");
    add_subject_alt_names(cert, opts);
}

std::string drain(BIO* bio) {
    char* data = nullptr;
    long n = BIO_get_mem_data(bio, &data);
    if (n <= 0 || data == nullptr) fail("BIO_get_mem_data");
    return std::string(data, static_cast<std::size_t>(n));
}

std::string to_pem(X509* cert) {
    bio_ptr bio(check(BIO_new(BIO_s_mem()), "BIO_new"));
    check(PEM_write_bio_X509(bio.get(), cert), "PEM_write_bio_X509");
    return drain(bio.get());
}

std::string to_pem(EVP_PKEY* key) {
    bio_ptr bio(check(BIO_new(BIO_s_mem()), "BIO_new"));
    check(PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr),
          "PEM_write_bio_PrivateKey");
    return drain(bio.get());
}

bio_ptr read_only_bio(const std::string& pem) {
    return bio_ptr(check(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())), "BIO_new_mem_buf"));
}

x509_ptr cert_from_pem(const std::string& pem) {
    auto bio = read_only_bio(pem);
    return x509_ptr(
        check(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr), "reading the issuer certificate"));
}

pkey_ptr key_from_pem(const std::string& pem) {
    auto bio = read_only_bio(pem);
    return pkey_ptr(check(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr),
                          "reading the issuer private key"));
}

/// The one routine behind both entry points: a self-signed certificate is
/// one whose issuer is itself and whose signing key is its own.
identity make(const cert_options& opts, X509* issuer, EVP_PKEY* issuer_key) {
    ERR_clear_error();
    pkey_ptr key = generate_key(opts.key);
    x509_ptr cert(check(X509_new(), "X509_new"));
    check(X509_set_version(cert.get(), X509_VERSION_3), "X509_set_version");
    set_random_serial(cert.get());
    set_validity(cert.get(), opts);
    set_subject(cert.get(), opts);
    if (issuer == nullptr) {
        issuer = cert.get();
        issuer_key = key.get();
    }
    check(X509_set_issuer_name(cert.get(), X509_get_subject_name(issuer)), "X509_set_issuer_name");
    check(X509_set_pubkey(cert.get(), key.get()), "X509_set_pubkey");
    add_extensions(cert.get(), issuer, opts);
    check(X509_sign(cert.get(), issuer_key, EVP_sha256()), "X509_sign");
    return identity{.key_pem = to_pem(key.get()), .cert_pem = to_pem(cert.get())};
}

}  // namespace

identity make_self_signed(const cert_options& opts) {
    return make(opts, nullptr, nullptr);
}

identity make_signed(const cert_options& opts, const identity& issuer) {
    ERR_clear_error();
    x509_ptr cert = cert_from_pem(issuer.cert_pem);
    pkey_ptr key = key_from_pem(issuer.key_pem);
    check(X509_check_private_key(cert.get(), key.get()), "matching the issuer's key to its certificate");
    return make(opts, cert.get(), key.get());
}

void write_file(const std::string& path, std::string_view contents) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(contents.data(), static_cast<std::streamsize>(contents.size()));
    out.close();
    if (!out) throw std::runtime_error("certs: cannot write " + path);
}

std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw std::runtime_error("certs: cannot read " + path);
    std::string contents{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
    if (in.bad()) throw std::runtime_error("certs: cannot read " + path);
    return contents;
}

}  // namespace httpbin::certs
