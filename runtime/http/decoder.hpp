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
    /// The name of the decoder a `Content-Encoding` value needs ("gzip",
    /// "deflate", "br"), or empty for identity and for encodings not handled
    /// (the body is then returned as it came).
    static std::string_view kind_of(std::string_view content_encoding) noexcept;
    /// A decoder of that kind (not empty).
    static std::unique_ptr<decoder> make(std::string_view kind);
    virtual ~decoder() = default;

    /// Ready for another body, keeping what it has allocated: a decoder is
    /// reused from one response to the next, so a body costs no allocation
    /// of a window, state or input buffer.
    void reset();

    /// Room for `size` encoded bytes at the end of the input (read into it,
    /// then `commit` what was read): no copy on the way in.
    char* input_space(std::size_t size);
    void commit(std::size_t size);
    /// A gzip stream's own statement of its decoded size (its trailer, mod
    /// 2^32), when all of it has been given: a hint, never trusted as a limit.
    std::size_t stated_size() const noexcept;
    /// Decodes into `out`, at most `size` bytes; 0 when all input given so far
    /// is used up (or the stream has ended). Throws `decode_error`.
    std::size_t output(char* out, std::size_t size);
    /// With all of the body given: decodes it in one go, appended to `out`,
    /// if that can be done faster than step by step (a gzip body, through
    /// libdeflate, sized by its trailer) and its decoded size is within
    /// `limit`; then true, and the stream has ended. False changes nothing:
    /// decode with `output` as usual (which reports what went wrong).
    virtual bool decode_whole(std::string& out, std::size_t limit) { return (void)out, (void)limit, false; }
    /// The encoded body has ended: throws `decode_error` if the stream had not.
    void finish() const;
    /// The name of the encoding, for messages.
    virtual std::string_view name() const noexcept = 0;

protected:
    /// Decodes from [*in, in_end) into [out, out + size); advances *in.
    /// Returns bytes written; sets `m_ended` at the end of the stream.
    virtual std::size_t step(const char*& in, const char* in_end, char* out, std::size_t size) = 0;
    virtual void restart() = 0;
    /// The stream may end here (for gzip: between members too).
    virtual bool complete() const noexcept { return m_ended; }
    bool m_ended = false;
    std::string m_pending;
    std::size_t m_used = 0;
    std::size_t m_filled = 0;  ///< of m_pending: what was committed
};

}  // namespace corun::http::detail
