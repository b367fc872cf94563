// int8 blockwise quantization. Encoding makes two passes over each block (absolute maximum, then
// quantization) while the block is in cache; decoding is one multiply per value. Both inner loops
// are branch-free so they vectorize. A decoder accepts only what an encoder can produce: scales
// finite and non-negative, values in -127..127, and every product finite.
#include "runtime/compression/int8_blockwise_codec.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>

namespace ddactor {
namespace {

// Adding and subtracting 1.5 * 2^23 rounds a float of magnitude < 2^22 to nearest even in the
// FPU's default mode; unlike lrint this vectorizes and never touches errno.
constexpr float round_to_integer_magic = 12582912.0f;

std::size_t block_count(std::size_t elements, std::size_t block_size) noexcept {
  return elements / block_size + (elements % block_size != 0 ? 1 : 0);
}

// Quantizes one block and returns its scale, or a negative value if the block holds NaN/Inf.
float quantize_block(const float* values, std::size_t count, std::int8_t* quantized) noexcept {
  std::uint32_t max_magnitude_bits = 0;
  std::uint32_t non_finite = 0;
  for (std::size_t i = 0; i < count; ++i) {
    const std::uint32_t magnitude = std::bit_cast<std::uint32_t>(values[i]) & 0x7fffffffu;
    non_finite |= magnitude >= 0x7f800000u ? 1u : 0u;
    // Finite magnitudes order like their bit patterns, and integer max vectorizes.
    max_magnitude_bits = std::max(max_magnitude_bits, magnitude);
  }
  if (non_finite != 0)
    return -1.0f;
  const float max_magnitude = std::bit_cast<float>(max_magnitude_bits);
  if (max_magnitude == 0.0f) {
    std::memset(quantized, 0, count);
    return 0.0f;
  }
  float scale = max_magnitude / 127.0f;
  // If the block's maximum is below ~9e-44, its scale underflows to zero; all its values are that
  // close to zero, and the block is sent as zeros (dividing by the zero scale would give NaN).
  if (scale == 0.0f) {
    std::memset(quantized, 0, count);
    return 0.0f;
  }
  // Near FLT_MAX, 127 * scale can round past it and the decoder would refuse the block.
  while (!std::isfinite(127.0f * scale))
    scale = std::nextafter(scale, 0.0f);
  // For subnormal scales 1 / scale overflows; divide in double then (|value / scale| <= 127.5).
  const float inverse = 1.0f / scale;
  if (std::isfinite(inverse)) {
    for (std::size_t i = 0; i < count; ++i) {
      // |scaled| <= 127 up to rounding, so clamping the integer (which vectorizes, unlike float
      // comparisons under GCC's default -ftrapping-math) is enough.
      const float scaled = values[i] * inverse;
      const float rounded = (scaled + round_to_integer_magic) - round_to_integer_magic;
      const std::int32_t level = static_cast<std::int32_t>(rounded);
      quantized[i] = static_cast<std::int8_t>(std::min(std::max(level, -127), 127));
    }
  } else {
    for (std::size_t i = 0; i < count; ++i) {
      double scaled = static_cast<double>(values[i]) / static_cast<double>(scale);
      scaled = std::min(std::max(scaled, -127.0), 127.0);
      quantized[i] = static_cast<std::int8_t>(std::nearbyint(scaled));
    }
  }
  return scale;
}

} // namespace

int8_blockwise_codec::int8_blockwise_codec(const codec_options& options)
  : block_size_(static_cast<std::size_t>(options.int8_block_size)),
    zstd_level_(options.zstd_level) {
  validate_codec_options(options);
}

std::vector<std::byte> int8_blockwise_codec::encode(std::span<const float> values) {
  const std::size_t blocks = block_count(values.size(), block_size_);
  std::vector<std::byte> frame =
    start_frame({codec_id::int8_blockwise, false, values.size(),
                 static_cast<std::uint32_t>(block_size_)},
                4 * blocks + values.size());
  std::byte* scales = frame.data() + frame_header_size;
  auto* quantized = reinterpret_cast<std::int8_t*>(scales + 4 * blocks);
  for (std::size_t block = 0; block < blocks; ++block) {
    const std::size_t start = block * block_size_;
    const std::size_t count = std::min(block_size_, values.size() - start);
    const float scale = quantize_block(values.data() + start, count, quantized + start);
    if (scale < 0.0f)
      reject_non_finite_input(id());
    std::memcpy(scales + 4 * block, &scale, 4);
  }
  seal_frame(frame, zstd_level_);
  return frame;
}

void int8_blockwise_codec::decode(std::span<const std::byte> encoded,
                                  std::span<float> out) const {
  decode_frame(read_frame_header_of(encoded, codec_id::int8_blockwise), encoded, out);
}

void int8_blockwise_codec::decode_frame(const frame_header& header,
                                        std::span<const std::byte> encoded,
                                        std::span<float> out) {
  check_element_count(header, out.size());
  const std::size_t block_size = header.parameter;
  if (block_size == 0 || block_size > (1u << 20))
    throw codec_error("int8 frame declares block size " + std::to_string(block_size) +
                      ", outside 1 .. 1048576");
  const std::size_t blocks = block_count(out.size(), block_size);
  const std::size_t payload_bytes = 4 * blocks + out.size();
  std::vector<std::byte> storage;
  const std::span<const std::byte> payload =
    open_frame_payload(header, encoded, payload_bytes, payload_bytes, storage);
  const std::byte* scales = payload.data();
  const auto* quantized = reinterpret_cast<const std::int8_t*>(scales + 4 * blocks);
  std::uint32_t invalid = 0;
  for (std::size_t block = 0; block < blocks; ++block) {
    float scale;
    std::memcpy(&scale, scales + 4 * block, 4);
    // Negative zero, negative or non-finite scales never come from an encoder.
    invalid |= (std::bit_cast<std::uint32_t>(scale) >= 0x7f800000u) ? 1u : 0u;
    const std::size_t start = block * block_size;
    const std::size_t count = std::min(block_size, out.size() - start);
    float* target = out.data() + start;
    const std::int8_t* source = quantized + start;
    for (std::size_t i = 0; i < count; ++i) {
      invalid |= source[i] == -128 ? 1u : 0u;
      const float value = static_cast<float>(source[i]) * scale;
      invalid |= (std::bit_cast<std::uint32_t>(value) & 0x7f800000u) == 0x7f800000u ? 1u : 0u;
      target[i] = value;
    }
  }
  if (invalid != 0)
    reject_non_finite_payload(codec_id::int8_blockwise, out);
}

double int8_blockwise_codec::estimated_ratio(std::size_t elements) const {
  if (elements == 0)
    return 1.0;
  const std::size_t bytes = frame_header_size + 4 * block_count(elements, block_size_) + elements;
  return static_cast<double>(bytes) / (4.0 * elements);
}

} // namespace ddactor
