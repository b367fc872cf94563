// The size rule of the adaptive codec; the encoding itself is delegated to none and int8.
#include "runtime/compression/adaptive_codec.hpp"

#include <string>

namespace ddactor {

adaptive_codec::adaptive_codec(const codec_options& options)
  : exact_below_(options.adaptive_exact_below), exact_(options), quantized_(options) {}

std::vector<std::byte> adaptive_codec::encode(std::span<const float> values) {
  return sends_exact(values.size()) ? exact_.encode(values) : quantized_.encode(values);
}

void adaptive_codec::decode(std::span<const std::byte> encoded, std::span<float> out) const {
  const frame_header header = read_frame_header(encoded);
  switch (header.codec) {
    case codec_id::none: none_codec::decode_frame(header, encoded, out); return;
    case codec_id::int8_blockwise: int8_blockwise_codec::decode_frame(header, encoded, out); return;
    default:
      throw codec_error("adaptive codec cannot decode a " + std::string(codec_name(header.codec)) +
                        " frame (only none and int8)");
  }
}

double adaptive_codec::estimated_ratio(std::size_t elements) const {
  return sends_exact(elements) ? exact_.estimated_ratio(elements)
                               : quantized_.estimated_ratio(elements);
}

} // namespace ddactor
