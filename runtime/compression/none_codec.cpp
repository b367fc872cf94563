// Raw float32 frames. Decoding copies and checks for NaN/Inf bit patterns in one pass.
#include "runtime/compression/none_codec.hpp"

#include <bit>
#include <cstring>

namespace ddactor {

none_codec::none_codec(const codec_options& options) : zstd_level_(options.zstd_level) {
  validate_codec_options(options);
}

std::vector<std::byte> none_codec::encode(std::span<const float> values) {
  std::uint32_t non_finite = 0;
  for (const float value : values)
    non_finite |= (std::bit_cast<std::uint32_t>(value) & 0x7f800000u) == 0x7f800000u ? 1u : 0u;
  if (non_finite != 0)
    reject_non_finite_input(id());
  std::vector<std::byte> frame =
    start_frame({codec_id::none, false, values.size(), 0}, values.size_bytes());
  if (!values.empty())
    std::memcpy(frame.data() + frame_header_size, values.data(), values.size_bytes());
  seal_frame(frame, zstd_level_);
  return frame;
}

void none_codec::decode(std::span<const std::byte> encoded, std::span<float> out) const {
  decode_frame(read_frame_header_of(encoded, codec_id::none), encoded, out);
}

void none_codec::decode_frame(const frame_header& header, std::span<const std::byte> encoded,
                              std::span<float> out) {
  check_element_count(header, out.size());
  const std::size_t payload_bytes = out.size_bytes();
  std::vector<std::byte> storage;
  const std::span<const std::byte> payload =
    open_frame_payload(header, encoded, payload_bytes, payload_bytes, storage);
  const std::byte* source = payload.data();
  std::uint32_t non_finite = 0;
  for (std::size_t i = 0; i < out.size(); ++i) {
    std::uint32_t bits;
    std::memcpy(&bits, source + 4 * i, 4);
    non_finite |= (bits & 0x7f800000u) == 0x7f800000u ? 1u : 0u;
    out[i] = std::bit_cast<float>(bits);
  }
  if (non_finite != 0)
    reject_non_finite_payload(codec_id::none, out);
}

double none_codec::estimated_ratio(std::size_t elements) const {
  if (elements == 0)
    return 1.0;
  return static_cast<double>(frame_header_size + 4 * elements) / (4.0 * elements);
}

} // namespace ddactor
