// fp16 frames: the payload is the 16-bit patterns, little-endian, one per value. The
// conversions and their NaN/Inf checks are in half_precision.cpp.
#include "runtime/compression/fp16_codec.hpp"

#include "runtime/compression/half_precision.hpp"

namespace ddactor {

fp16_codec::fp16_codec(const codec_options& options) : zstd_level_(options.zstd_level) {
  validate_codec_options(options);
}

std::vector<std::byte> fp16_codec::encode(std::span<const float> values) {
  std::vector<std::byte> frame =
    start_frame({codec_id::fp16, false, values.size(), 0}, 2 * values.size());
  if (!floats_to_fp16(values, frame.data() + frame_header_size))
    reject_non_finite_input(id());
  seal_frame(frame, zstd_level_);
  return frame;
}

void fp16_codec::decode(std::span<const std::byte> encoded, std::span<float> out) const {
  decode_frame(read_frame_header_of(encoded, codec_id::fp16), encoded, out);
}

void fp16_codec::decode_frame(const frame_header& header, std::span<const std::byte> encoded,
                              std::span<float> out) {
  check_element_count(header, out.size());
  const std::size_t payload_bytes = 2 * out.size();
  std::vector<std::byte> storage;
  const std::span<const std::byte> payload =
    open_frame_payload(header, encoded, payload_bytes, payload_bytes, storage);
  if (!fp16_to_floats(payload.data(), out))
    reject_non_finite_payload(codec_id::fp16, out);
}

double fp16_codec::estimated_ratio(std::size_t elements) const {
  if (elements == 0)
    return 1.0;
  return static_cast<double>(frame_header_size + 2 * elements) / (4.0 * elements);
}

} // namespace ddactor
