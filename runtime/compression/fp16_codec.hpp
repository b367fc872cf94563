#pragma once
// The fp16 codec: every value rounded to nearest even and sent as 16 bits, half the bytes of
// float32. IEEE half precision: 11 significant bits, range +-65504 (values beyond it clamp, see
// half_precision.hpp), subnormals down to 6e-8. Fits parameters and normalized gradients; tiny raw
// gradients lose precision in the subnormal range, where bf16 is the better choice. Stateless.
#include "runtime/compression/codec_frame.hpp"
#include "runtime/compression/tensor_codec.hpp"

namespace ddactor {

class fp16_codec final : public tensor_codec {
 public:
  explicit fp16_codec(const codec_options& options = {});

  codec_id id() const override { return codec_id::fp16; }
  std::string_view name() const override { return "fp16"; }
  std::vector<std::byte> encode(std::span<const float> values) override;
  void decode(std::span<const std::byte> encoded, std::span<float> out) const override;
  double estimated_ratio(std::size_t elements) const override;

  // Decodes a frame whose header (already read and of this codec) is `header`.
  static void decode_frame(const frame_header& header, std::span<const std::byte> encoded,
                           std::span<float> out);

 private:
  int zstd_level_;
};

} // namespace ddactor
