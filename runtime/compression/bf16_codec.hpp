#pragma once
// The bf16 codec: every value rounded to nearest even and sent as 16 bits, half the bytes of
// float32. bfloat16: the top half of a float32, so the full float32 range with 8 significant
// bits. No clamping in practice and no underflow worries for tiny gradients, at a coarser
// precision than fp16 (relative error up to 2^-9 against fp16's 2^-12). Stateless.
#include "runtime/compression/codec_frame.hpp"
#include "runtime/compression/tensor_codec.hpp"

namespace ddactor {

class bf16_codec final : public tensor_codec {
 public:
  explicit bf16_codec(const codec_options& options = {});

  codec_id id() const override { return codec_id::bf16; }
  std::string_view name() const override { return "bf16"; }
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
