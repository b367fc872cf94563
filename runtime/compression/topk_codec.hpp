#pragma once
// The top-k codec: each frame keeps the k = round(topk_fraction * n) entries (at least 1) of
// largest magnitude and drops the rest; decoding fills the dropped entries with 0.
//
// Stateless. What a frame drops is not lost, but the codec does not keep it: error feedback (as
// in Deep Gradient Compression and EF-SGD) belongs to the all-reduce round, which adds its
// residual to the values before encoding and gets back what was left over (chunk_coding.hpp:
// chunk_encode_job::error_feedback; runtime/allreduce/butterfly_round.hpp keeps the residual as
// the round's input and outcome), so that a failed round or a restarted attempt never leaves a
// codec holding error feedback for values nobody applied.
//
// Payload: the k kept values as float32, then their indices in increasing order as LEB128 varints
// of the gap to the previous index plus one (the first is the index itself). The frame parameter
// is k. Why these choices:
//   - float32 values: gradients span 1e-8 .. 1e6 across layers, which fp16 would clamp or flush
//     to zero; bf16 would add a quantization error on the very entries chosen for being large.
//     Exact values keep the residual of a kept entry at exactly 0 and make the bound "decoded +
//     residual = input" hold to float rounding. At k = 1 % the whole frame is ~1.3 % of float32
//     anyway, and the zstd stage squeezes the value bytes where they are compressible.
//   - delta varints: with 1 % kept the mean gap is ~100, so an index costs 1-2 bytes instead of 4,
//     and strictly increasing indices make duplicates impossible by construction.
#include "runtime/compression/codec_frame.hpp"
#include "runtime/compression/tensor_codec.hpp"

#include <cstdint>

namespace ddactor {

class topk_codec final : public tensor_codec {
 public:
  explicit topk_codec(const codec_options& options = {});

  codec_id id() const override { return codec_id::topk; }
  std::string_view name() const override { return "topk"; }
  // Encodes the top-k of values. Throws codec_error on NaN/Inf input.
  std::vector<std::byte> encode(std::span<const float> values) override;
  void decode(std::span<const std::byte> encoded, std::span<float> out) const override;
  double estimated_ratio(std::size_t elements) const override;

  // How many entries a frame of `elements` values keeps.
  std::size_t kept_count(std::size_t elements) const noexcept;
  // Decodes a frame whose header (already read and of this codec) is `header`.
  static void decode_frame(const frame_header& header, std::span<const std::byte> encoded,
                           std::span<float> out);

 private:
  double fraction_;
  int zstd_level_;
};

} // namespace ddactor
