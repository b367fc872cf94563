#pragma once
// The exact codec: raw little-endian float32 values in a frame. It is the baseline every ratio is
// measured against, and what the `adaptive` chunk policy uses for small tensors (norms, biases)
// that must not lose precision. Stateless.
#include "runtime/compression/codec_frame.hpp"
#include "runtime/compression/tensor_codec.hpp"

namespace ddactor {

class none_codec final : public tensor_codec {
 public:
  explicit none_codec(const codec_options& options = {});

  codec_id id() const override { return codec_id::none; }
  std::string_view name() const override { return "none"; }
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
