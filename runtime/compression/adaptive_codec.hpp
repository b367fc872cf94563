#pragma once
// The adaptive codec: a per-chunk choice between exactness and bandwidth. Chunks with fewer than
// `adaptive_exact_below` elements (4096 by default) are sent exactly as `none` frames, larger ones
// as `int8` blockwise frames. Small tensors are norms' gains, biases and embeddings of scalars:
// few bytes, so quantizing them saves almost nothing, yet they are the parameters most sensitive
// to error (a layer-norm gain multiplies a whole activation). Large tensors are the weight
// matrices, where int8 saves ~74 % of the bytes at a relative error of ~1 %. The frames carry the
// codec actually used, so any peer decodes them (decode_any, or this codec's decode). Stateless.
#include "runtime/compression/int8_blockwise_codec.hpp"
#include "runtime/compression/none_codec.hpp"

namespace ddactor {

class adaptive_codec final : public tensor_codec {
 public:
  explicit adaptive_codec(const codec_options& options = {});

  codec_id id() const override { return codec_id::adaptive; }
  std::string_view name() const override { return "adaptive"; }
  std::vector<std::byte> encode(std::span<const float> values) override;
  // Accepts `none` and `int8` frames, whatever their size.
  void decode(std::span<const std::byte> encoded, std::span<float> out) const override;
  double estimated_ratio(std::size_t elements) const override;

  // Whether a chunk of `elements` values is sent exactly.
  bool sends_exact(std::size_t elements) const noexcept { return elements < exact_below_; }

 private:
  std::size_t exact_below_;
  none_codec exact_;
  int8_blockwise_codec quantized_;
};

} // namespace ddactor
