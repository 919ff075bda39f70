#include "decoder.hpp"

#include <libdeflate.h>
#include <zlib.h>

#include <brotli/decode.h>
#include <boost/beast/core/string.hpp>

namespace corun::http::detail {

namespace {

/// gzip and deflate, on zlib. "deflate" means the zlib format (RFC 9110
/// §8.4.1.2), but some servers send raw deflate: that is detected on the
/// first bytes and decoded too, as browsers and curl do.
class zlib_decoder final : public decoder {
public:
    explicit zlib_decoder(bool gzip) : m_gzip(gzip) {
        // 15 + 32: a window of 32 KiB, and the zlib or gzip header detected.
        if (inflateInit2(&m_z, 15 + 32) != Z_OK) throw decode_error("zlib cannot start");
    }
    ~zlib_decoder() override {
        inflateEnd(&m_z);
        libdeflate_free_decompressor(m_whole);
    }
    /// libdeflate decodes a whole gzip body two to three times as fast as
    /// zlib's inflate, checking its CRC as zlib does.
    bool decode_whole(std::string& out, std::size_t limit) override {
        std::size_t stated = stated_size();
        if (!m_gzip || stated == 0 || stated > limit || m_z.total_in != 0) return false;
        if (!m_whole && !(m_whole = libdeflate_alloc_decompressor())) return false;
        const std::size_t at = out.size(), given = m_filled - m_used;
        out.resize(at + stated);
        std::size_t used = 0, made = 0;
        auto rc = libdeflate_gzip_decompress_ex(m_whole, m_pending.data() + m_used, given, out.data() + at,
                                                stated, &used, &made);
        if (rc != LIBDEFLATE_SUCCESS || used != given || made != stated) {
            out.resize(at);  // several members, or what zlib will name: step by step
            return false;
        }
        m_used = m_filled;
        m_ended = true;
        return true;
    }
    void restart() override {
        m_format_known = m_gzip;
        m_between_members = false;
        inflateReset2(&m_z, 15 + 32);
    }
    std::string_view name() const noexcept override { return m_gzip ? "gzip" : "deflate"; }

protected:
    std::size_t step(const char*& in, const char* in_end, char* out, std::size_t size) override {
        auto byte = [&](std::ptrdiff_t i) { return static_cast<unsigned char>(in[i]); };
        if (!m_format_known) {
            // "deflate" is the zlib format, but some servers send it raw:
            // told apart by the zlib header's two bytes, once both are here.
            if (in_end - in < 2) return 0;
            bool zlib_header = (byte(0) & 0x0f) == 8 && (byte(0) * 256 + byte(1)) % 31 == 0;
            if (!zlib_header && inflateReset2(&m_z, -15) != Z_OK) throw decode_error("zlib cannot restart");
            m_format_known = true;
        }
        if (m_between_members) {
            // After a gzip member: another member, or the end (anything else
            // after it is ignored, as gzip(1) and browsers do).
            if (in_end - in < 2) {
                if (in_end - in == 1 && byte(0) != 0x1f) m_ended = true;
                return 0;
            }
            if (byte(0) != 0x1f || byte(1) != 0x8b) {
                m_ended = true;
                return 0;
            }
            inflateReset(&m_z);
            m_between_members = false;
        }
        m_z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in));
        m_z.avail_in = static_cast<uInt>(std::min<std::size_t>(in_end - in, UINT32_MAX));
        m_z.next_out = reinterpret_cast<Bytef*>(out);
        m_z.avail_out = static_cast<uInt>(std::min<std::size_t>(size, UINT32_MAX));
        int rc = inflate(&m_z, Z_NO_FLUSH);
        std::size_t written = size - m_z.avail_out;
        in = reinterpret_cast<const char*>(m_z.next_in);
        if (rc == Z_STREAM_END) {
            // A gzip body may hold several members, one after another, and
            // the next may come in a later read.
            if (m_gzip) {
                m_between_members = true;
            } else {
                m_ended = true;
            }
        } else if (rc != Z_OK && rc != Z_BUF_ERROR) {
            throw decode_error(std::string("the ") + std::string(name()) + " body is corrupt (" +
                               (m_z.msg ? m_z.msg : "zlib error " + std::to_string(rc)) + ")");
        }
        return written;
    }
    bool complete() const noexcept override { return m_ended || m_between_members; }

private:
    z_stream m_z{};
    libdeflate_decompressor* m_whole = nullptr;
    bool m_gzip;
    bool m_format_known = m_gzip;  ///< for deflate: zlib-wrapped or raw, decided
    bool m_between_members = false;
};

class brotli_decoder final : public decoder {
public:
    brotli_decoder() : m_state(BrotliDecoderCreateInstance(nullptr, nullptr, nullptr)) {
        if (!m_state) throw decode_error("brotli cannot start");
    }
    ~brotli_decoder() override { BrotliDecoderDestroyInstance(m_state); }
    void restart() override {
        auto* fresh = BrotliDecoderCreateInstance(nullptr, nullptr, nullptr);
        if (!fresh) throw decode_error("brotli cannot start");
        BrotliDecoderDestroyInstance(m_state);
        m_state = fresh;
    }
    std::string_view name() const noexcept override { return "br"; }

protected:
    std::size_t step(const char*& in, const char* in_end, char* out, std::size_t size) override {
        std::size_t avail_in = static_cast<std::size_t>(in_end - in);
        const auto* next_in = reinterpret_cast<const std::uint8_t*>(in);
        std::size_t avail_out = size;
        auto* next_out = reinterpret_cast<std::uint8_t*>(out);
        auto rc = BrotliDecoderDecompressStream(m_state, &avail_in, &next_in, &avail_out, &next_out, nullptr);
        in = reinterpret_cast<const char*>(next_in);
        if (rc == BROTLI_DECODER_RESULT_ERROR)
            throw decode_error(std::string("the br body is corrupt (") +
                               BrotliDecoderErrorString(BrotliDecoderGetErrorCode(m_state)) + ")");
        if (rc == BROTLI_DECODER_RESULT_SUCCESS) m_ended = true;
        return size - avail_out;
    }

private:
    BrotliDecoderState* m_state;
};

}  // namespace

std::string_view decoder::kind_of(std::string_view encoding) noexcept {
    using boost::beast::iequals;
    while (!encoding.empty() && (encoding.back() == ' ' || encoding.back() == '\t'))
        encoding.remove_suffix(1);
    while (!encoding.empty() && (encoding.front() == ' ' || encoding.front() == '\t'))
        encoding.remove_prefix(1);
    if (iequals(encoding, "gzip") || iequals(encoding, "x-gzip")) return "gzip";
    if (iequals(encoding, "deflate")) return "deflate";
    if (iequals(encoding, "br")) return "br";
    return {};
}

std::unique_ptr<decoder> decoder::make(std::string_view kind) {
    if (kind == "br") return std::make_unique<brotli_decoder>();
    return std::make_unique<zlib_decoder>(kind == "gzip");
}

void decoder::reset() {
    restart();
    m_ended = false;
    m_used = m_filled = 0;
    // A large body's input is not kept for the next one.
    if (m_pending.capacity() > (std::size_t{1} << 20)) std::string().swap(m_pending);
}

char* decoder::input_space(std::size_t size) {
    // Consumed input is dropped, and so is any after the end of the stream:
    // the input never grows beyond what is still to decode.
    if (m_used == m_filled || m_ended) m_used = m_filled = 0;
    if (m_pending.size() < m_filled + size) m_pending.resize(m_filled + size);
    return m_pending.data() + m_filled;
}

void decoder::commit(std::size_t size) {
    m_filled += size;
}

std::size_t decoder::stated_size() const noexcept {
    const std::size_t given = m_filled - m_used;
    if (name() != "gzip" || given < 18) return 0;
    const auto* end = reinterpret_cast<const unsigned char*>(m_pending.data() + m_filled);
    std::size_t stated = std::size_t{end[-4]} | std::size_t{end[-3]} << 8 | std::size_t{end[-2]} << 16 |
                         std::size_t{end[-1]} << 24;
    // deflate cannot shrink more than 1032 to 1: a trailer claiming more is
    // not believed, nor allocated for.
    return stated / 1032 > given ? 0 : stated;
}

std::size_t decoder::output(char* out, std::size_t size) {
    std::size_t total = 0;
    bool stalled = false;
    while (total < size && !m_ended) {
        const char* begin = m_pending.data() + m_used;
        const char* in = begin;
        std::size_t n = step(in, m_pending.data() + m_filled, out + total, size - total);
        m_used += static_cast<std::size_t>(in - begin);
        total += n;
        if (n == 0 && in == begin) {
            // No progress: more input is needed (once: a restart was made).
            if (stalled || m_used == m_filled) break;
            stalled = true;
        } else {
            stalled = false;
        }
    }
    return total;
}

void decoder::finish() const {
    if (!complete()) throw decode_error("the " + std::string(name()) + " body is cut short");
}

}  // namespace corun::http::detail
