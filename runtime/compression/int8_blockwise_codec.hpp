#pragma once
// The int8 blockwise codec: values are cut into blocks of `int8_block_size`; each block sends one
// float32 scale (its absolute maximum / 127) and one int8 per value, round(value / scale) in
// -127..127. About a quarter of float32's bytes (1 + 4 / block size per value); the error of a
// value is at most half its block's scale, so blocks keep an outlier from flattening the whole
// tensor. All-zero blocks (scale 0) decode exactly. Blocks whose largest magnitude is below ~9e-44
// come back as zeros (the scale underflows float32; no gradient lives there). Stateless.
//
// Payload: the scales of all blocks (float32 each), then the int8 values of all elements. The
// frame parameter is the block size, so decoding needs no options.
#include "runtime/compression/codec_frame.hpp"
#include "runtime/compression/tensor_codec.hpp"

namespace ddactor {

class int8_blockwise_codec final : public tensor_codec {
 public:
  explicit int8_blockwise_codec(const codec_options& options = {});

  codec_id id() const override { return codec_id::int8_blockwise; }
  std::string_view name() const override { return "int8"; }
  std::vector<std::byte> encode(std::span<const float> values) override;
  void decode(std::span<const std::byte> encoded, std::span<float> out) const override;
  double estimated_ratio(std::size_t elements) const override;

  std::size_t block_size() const noexcept { return block_size_; }

  // Decodes a frame whose header (already read and of this codec) is `header`.
  static void decode_frame(const frame_header& header, std::span<const std::byte> encoded,
                           std::span<float> out);

 private:
  std::size_t block_size_;
  int zstd_level_;
};

} // namespace ddactor
