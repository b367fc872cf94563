#pragma once
// The 16-bit codecs: every value rounded to nearest even and sent as 16 bits, half the bytes of
// float32, in one of two formats (half_precision.hpp converts them):
// - fp16, IEEE half precision: 11 significant bits, range +-65504 (values beyond it clamp),
//   subnormals down to 6e-8. Fits parameters and normalized gradients; tiny raw gradients lose
//   precision in the subnormal range, where bf16 is the better choice.
// - bf16, bfloat16: the top half of a float32, so the full float32 range with 8 significant
//   bits. No clamping in practice and no underflow worries for tiny gradients, at a coarser
//   precision than fp16 (relative error up to 2^-9 against fp16's 2^-12).
// Stateless.
#include "runtime/compression/codec_frame.hpp"
#include "runtime/compression/tensor_codec.hpp"

namespace ddactor {

enum class half_format { fp16, bf16 };

class half_codec final : public tensor_codec {
 public:
  explicit half_codec(half_format format, const codec_options& options = {});

  codec_id id() const override;
  std::string_view name() const override;
  std::vector<std::byte> encode(std::span<const float> values) override;
  void decode(std::span<const std::byte> encoded, std::span<float> out) const override;
  double estimated_ratio(std::size_t elements) const override;

  // Decodes a frame whose header (already read and of this format's codec) is `header`.
  static void decode_frame(half_format format, const frame_header& header,
                           std::span<const std::byte> encoded, std::span<float> out);

 private:
  half_format format_;
  int zstd_level_;
};

} // namespace ddactor
