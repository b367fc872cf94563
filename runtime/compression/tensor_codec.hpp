#pragma once
// The interface of ddactor's gradient and parameter codecs, their options and their error type.
// A codec turns a chunk of a flat float32 vector into bytes for the wire and back. The concrete
// codecs (none, fp16, bf16, int8 blockwise, top-k) live one per file
// beside this one; codec_factory.hpp builds them by name and decodes any frame.
//
// Wire frame. Every encoding is one frame (codec_frame.hpp): a 20-byte little-endian header
// (magic "DC", version, codec id, flags, element count as u64, one codec parameter as u32), then
// the codec's payload, compressed by zstd when the options ask for it and that makes it smaller.
// A frame describes itself completely, so decode_any() needs no options. Decoders treat frames as
// hostile: every declared size is checked against the bytes actually present and against the
// caller's output size before anything is read or allocated, and decoded values that are not
// finite (NaN/Inf bit patterns in fp32, fp16, bf16 payloads or in int8 scales) are refused, so a
// malicious or broken peer can make a round fail but can never poison the model.
//
// Consistency across peers. Lossy codecs make the all-reduce order-sensitive: if every peer
// quantized the reduced values itself, peers would disagree by rounding. The rule is therefore:
// the reducer of a part quantizes the reduced result exactly once, sends that one encoding to every
// peer, and decodes that same encoding for its own copy too. Decoding is a pure function of the
// bytes (no threads, no reduction order, no fast-math; the library is built without -ffast-math),
// so every peer ends the round with bit-identical values.
//
// Thread-safety. decode() is const, touches no mutable state and may run on any number of threads
// at once, even while encode() runs. encode() may mutate the codec (top-k keeps its error-feedback
// residual there), so one codec instance must be encoded from one thread at a time; use one
// instance per stream (per parameter chunk) and per thread.
#include <cstddef>
#include <cstdint>
#include <span>
#include <stdexcept>
#include <string_view>
#include <vector>

namespace ddactor {

// The byte that names a codec in a frame header. zstd is a stage, a header flag. (The
// `adaptive` setting is no codec: runtime/allreduce/chunk_policy.hpp sends each tensor as `none`
// or `int8_blockwise`.)
enum class codec_id : std::uint8_t {
  none = 0,
  fp16 = 1,
  bf16 = 2,
  int8_blockwise = 3,
  topk = 4,
};

// The factory name of a codec ("none", "fp16", "bf16", "int8", "topk").
std::string_view codec_name(codec_id id) noexcept;

struct codec_options {
  int int8_block_size = 256;               // elements per float32 scale, 1 .. 2^20
  double topk_fraction = 0.05;             // share of entries top-k keeps, (0, 1]
  int zstd_level = 0;                      // 0 = no zstd stage, else 1 .. ZSTD_maxCLevel()
  std::size_t adaptive_exact_below = 4096; // adaptive policy: smaller tensors stay exact
};

// Everything a codec refuses: bad options, non-finite input, malformed or hostile frames.
class codec_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Throws codec_error naming the first option that is out of range.
void validate_codec_options(const codec_options& options);

class tensor_codec {
 public:
  virtual ~tensor_codec() = default;

  virtual codec_id id() const = 0;
  virtual std::string_view name() const = 0;

  // One frame for `values`. Throws codec_error if a value is NaN or Inf (nothing is encoded and
  // no codec state changes) or if there are more than 2^32 - 1 values.
  virtual std::vector<std::byte> encode(std::span<const float> values) = 0;

  // Decodes a frame of this codec into `out`, whose size must equal the frame's element count.
  // Throws codec_error on a frame of another codec, a size mismatch, a malformed or truncated
  // frame, or a non-finite decoded value. When it throws, `out` is either untouched (header and
  // size errors) or zero-filled (errors found while decoding the payload): never non-finite.
  virtual void decode(std::span<const std::byte> encoded, std::span<float> out) const = 0;

  // Encoded bytes (header included, zstd stage excluded) per 4 bytes of float32 input, for a chunk
  // of `elements` values; 1.0 for zero elements. Used to plan chunking and bandwidth weights.
  virtual double estimated_ratio(std::size_t elements) const = 0;
};

} // namespace ddactor
