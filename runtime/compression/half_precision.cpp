// Bulk fp16/bf16 conversions. Each loop works on a fixed-size staging block of 16-bit values in
// a local array, so the compiler sees aligned, non-aliasing data of known length and vectorizes
// the scalar conversions of half_precision.hpp; memcpy moves the block to or from the wire bytes,
// which may be unaligned. The NaN/Inf test is an OR-reduction folded into the same pass.
#include "runtime/compression/half_precision.hpp"

#include <algorithm>
#include <cstring>

namespace ddactor {
namespace {

constexpr std::size_t staging_elements = 1024;

inline std::uint32_t non_finite_float(float value) noexcept {
  return (std::bit_cast<std::uint32_t>(value) & 0x7f800000u) == 0x7f800000u ? 1u : 0u;
}

template <std::uint16_t (*convert)(float) noexcept>
bool floats_to_16bit(std::span<const float> values, std::byte* bytes) noexcept {
  std::uint16_t staged[staging_elements];
  std::uint32_t non_finite = 0;
  for (std::size_t start = 0; start < values.size(); start += staging_elements) {
    const std::size_t count = std::min(staging_elements, values.size() - start);
    const float* source = values.data() + start;
    for (std::size_t i = 0; i < count; ++i) {
      non_finite |= non_finite_float(source[i]);
      staged[i] = convert(source[i]);
    }
    std::memcpy(bytes + 2 * start, staged, 2 * count);
  }
  return non_finite == 0;
}

template <float (*convert)(std::uint16_t) noexcept, bool (*is_finite)(std::uint16_t) noexcept>
bool floats_from_16bit(const std::byte* bytes, std::span<float> out) noexcept {
  std::uint16_t staged[staging_elements];
  std::uint32_t non_finite = 0;
  for (std::size_t start = 0; start < out.size(); start += staging_elements) {
    const std::size_t count = std::min(staging_elements, out.size() - start);
    std::memcpy(staged, bytes + 2 * start, 2 * count);
    float* target = out.data() + start;
    for (std::size_t i = 0; i < count; ++i) {
      non_finite |= is_finite(staged[i]) ? 0u : 1u;
      target[i] = convert(staged[i]);
    }
  }
  return non_finite == 0;
}

} // namespace

bool floats_to_fp16(std::span<const float> values, std::byte* bytes) noexcept {
  return floats_to_16bit<float_to_fp16_bits>(values, bytes);
}

bool fp16_to_floats(const std::byte* bytes, std::span<float> out) noexcept {
  return floats_from_16bit<fp16_bits_to_float, is_finite_fp16_bits>(bytes, out);
}

bool floats_to_bf16(std::span<const float> values, std::byte* bytes) noexcept {
  return floats_to_16bit<float_to_bf16_bits>(values, bytes);
}

bool bf16_to_floats(const std::byte* bytes, std::span<float> out) noexcept {
  return floats_from_16bit<bf16_bits_to_float, is_finite_bf16_bits>(bytes, out);
}

} // namespace ddactor
