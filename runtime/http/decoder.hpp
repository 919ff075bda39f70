// Content-Encoding decoders (gzip, deflate, br) for response bodies, fed as
// the body arrives and drained in bounded pieces, so that neither a large
// body nor a decompression bomb is ever held whole.
#pragma once

#include <cstddef>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>

namespace corun::http::detail {

/// The body cannot be decoded: it is corrupt or cut short.
struct decode_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

class decoder {
public:
    /// A decoder for a `Content-Encoding` value, or nullptr for identity and
    /// for encodings not handled (the body is then returned as it came).
    static std::unique_ptr<decoder> make(std::string_view content_encoding);
    virtual ~decoder() = default;

    /// Adds encoded bytes; they are decoded by `output` calls.
    void input(const char* data, std::size_t size);
    /// Decodes into `out`, at most `size` bytes; 0 when all input given so far
    /// is used up (or the stream has ended). Throws `decode_error`.
    std::size_t output(char* out, std::size_t size);
    /// The encoded body has ended: throws `decode_error` if the stream had not.
    void finish() const;
    /// The name of the encoding, for messages.
    virtual std::string_view name() const noexcept = 0;

protected:
    /// Decodes from [*in, in_end) into [out, out + size); advances *in.
    /// Returns bytes written; sets `m_ended` at the end of the stream.
    virtual std::size_t step(const char*& in, const char* in_end, char* out, std::size_t size) = 0;
    bool m_ended = false;

private:
    std::string m_pending;
    std::size_t m_used = 0;
};

}  // namespace corun::http::detail
