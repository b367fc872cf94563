// 16-bit frames: the payload is the 16-bit patterns, little-endian, one per value. The
// conversions and their NaN/Inf checks are in half_precision.cpp.
#include "runtime/compression/half_codec.hpp"

#include "runtime/compression/half_precision.hpp"

namespace ddactor {
namespace {

constexpr std::size_t bytes_per_value = 2;

codec_id id_of(half_format format) {
  return format == half_format::fp16 ? codec_id::fp16 : codec_id::bf16;
}

} // namespace

half_codec::half_codec(half_format format, const codec_options& options)
  : format_(format), zstd_level_(options.zstd_level) {
  validate_codec_options(options);
}

codec_id half_codec::id() const { return id_of(format_); }

std::string_view half_codec::name() const { return codec_name(id()); }

std::vector<std::byte> half_codec::encode(std::span<const float> values) {
  std::vector<std::byte> frame =
    start_frame({id(), false, values.size(), 0}, bytes_per_value * values.size());
  std::byte* payload = frame.data() + frame_header_size;
  const bool finite = format_ == half_format::fp16 ? floats_to_fp16(values, payload)
                                                   : floats_to_bf16(values, payload);
  if (!finite)
    reject_non_finite_input(id());
  seal_frame(frame, zstd_level_);
  return frame;
}

void half_codec::decode(std::span<const std::byte> encoded, std::span<float> out) const {
  decode_frame(format_, read_frame_header_of(encoded, id()), encoded, out);
}

void half_codec::decode_frame(half_format format, const frame_header& header,
                              std::span<const std::byte> encoded, std::span<float> out) {
  check_element_count(header, out.size());
  const std::size_t payload_bytes = bytes_per_value * out.size();
  std::vector<std::byte> storage;
  const std::span<const std::byte> payload =
    open_frame_payload(header, encoded, payload_bytes, payload_bytes, storage);
  const bool finite = format == half_format::fp16 ? fp16_to_floats(payload.data(), out)
                                                  : bf16_to_floats(payload.data(), out);
  if (!finite)
    reject_non_finite_payload(id_of(format), out);
}

double half_codec::estimated_ratio(std::size_t elements) const {
  if (elements == 0)
    return 1.0;
  return static_cast<double>(frame_header_size + bytes_per_value * elements) /
         (4.0 * static_cast<double>(elements));
}

} // namespace ddactor
