#pragma once
// Conversions between float32 and the two 16-bit formats the codecs send: IEEE fp16 and bf16.
// Scalar conversions are branch-free bit manipulation (selects, not branches) so the bulk loops in
// half_precision.cpp vectorize; no F16C or other intrinsics, so results never depend on the CPU.
//
// float -> 16 bits rounds to nearest, ties to even, subnormals included. Finite values beyond the
// format's range clamp to its largest finite value instead of becoming Inf: a decoder must refuse
// Inf (it would poison the model), so an Inf on the wire would fail the whole averaging round for
// one oversized entry, while the clamped value keeps the round alive with a bounded error (such
// gradients are clipped anyway, and top-k's error feedback carries the remainder). NaN and Inf
// inputs are not converted meaningfully here; the bulk functions report them and codecs refuse.
#include <bit>
#include <cstddef>
#include <cstdint>
#include <span>

namespace ddactor {

inline constexpr std::uint16_t fp16_max_finite_bits = 0x7bff; // 65504
inline constexpr std::uint16_t bf16_max_finite_bits = 0x7f7f; // 3.3895314e38

inline std::uint16_t float_to_fp16_bits(float value) noexcept {
  const auto bits = std::bit_cast<std::uint32_t>(value);
  const std::uint32_t sign = (bits >> 16) & 0x8000u;
  const std::uint32_t magnitude = bits & 0x7fffffffu;
  // Normal range: rebias the exponent (127 -> 15) and round the 13 dropped mantissa bits to
  // nearest even by adding 0xfff plus the lowest kept bit; a carry moves into the exponent.
  const std::uint32_t lowest_kept = (magnitude >> 13) & 1u;
  const std::uint32_t normal = (magnitude - 0x38000000u + 0x0fffu + lowest_kept) >> 13;
  // Below 2^-14 the result is subnormal with unit 2^-24: adding 0.5f (whose ulp is 2^-24) lets
  // the FPU round to nearest even, and the mantissa of the sum is the fp16 bit pattern.
  const float shifted = std::bit_cast<float>(magnitude) + 0.5f;
  const std::uint32_t subnormal = std::bit_cast<std::uint32_t>(shifted) - 0x3f000000u;
  // Masks rather than ?: so that GCC, which keeps float operations inside branches under its
  // default -ftrapping-math, computes both paths and the loops stay vectorizable.
  const std::uint32_t is_subnormal = 0u - static_cast<std::uint32_t>(magnitude < 0x38800000u);
  std::uint32_t half = (subnormal & is_subnormal) | (normal & ~is_subnormal);
  half = half < fp16_max_finite_bits ? half : fp16_max_finite_bits;
  return static_cast<std::uint16_t>(half | sign);
}

inline bool is_finite_fp16_bits(std::uint16_t half) noexcept {
  return (half & 0x7c00u) != 0x7c00u;
}

inline float fp16_bits_to_float(std::uint16_t half) noexcept {
  const std::uint32_t sign = (static_cast<std::uint32_t>(half) & 0x8000u) << 16;
  const std::uint32_t magnitude = half & 0x7fffu;
  const std::uint32_t normal = (magnitude << 13) + 0x38000000u;
  // Subnormal: mantissa * 2^-24, exact in float32.
  const float subnormal_value = static_cast<float>(static_cast<std::int32_t>(magnitude)) * 0x1p-24f;
  const auto subnormal = std::bit_cast<std::uint32_t>(subnormal_value);
  const std::uint32_t is_subnormal = 0u - static_cast<std::uint32_t>(magnitude < 0x0400u);
  const std::uint32_t bits = (subnormal & is_subnormal) | (normal & ~is_subnormal);
  return std::bit_cast<float>(bits | sign);
}

inline std::uint16_t float_to_bf16_bits(float value) noexcept {
  const auto bits = std::bit_cast<std::uint32_t>(value);
  const std::uint32_t sign = (bits >> 16) & 0x8000u;
  const std::uint32_t magnitude = bits & 0x7fffffffu;
  // bf16 is the top half of a float32, so rounding the low 16 bits to nearest even is all it
  // takes, subnormals included (their bit patterns are contiguous with the normals).
  std::uint32_t rounded = (magnitude + 0x7fffu + ((magnitude >> 16) & 1u)) >> 16;
  rounded = rounded < bf16_max_finite_bits ? rounded : bf16_max_finite_bits;
  return static_cast<std::uint16_t>(rounded | sign);
}

inline bool is_finite_bf16_bits(std::uint16_t bf16) noexcept {
  return (bf16 & 0x7f80u) != 0x7f80u;
}

inline float bf16_bits_to_float(std::uint16_t bf16) noexcept {
  return std::bit_cast<float>(static_cast<std::uint32_t>(bf16) << 16);
}

// Bulk conversions to and from little-endian 16-bit values at `bytes` (2 * size bytes, any
// alignment). The to-16-bit functions return false if an input was NaN or Inf (the output is then
// meaningless); the from-16-bit functions return false if a pattern was NaN or Inf (that output
// slot then holds a finite placeholder, the caller must discard `out`).
bool floats_to_fp16(std::span<const float> values, std::byte* bytes) noexcept;
bool fp16_to_floats(const std::byte* bytes, std::span<float> out) noexcept;
bool floats_to_bf16(std::span<const float> values, std::byte* bytes) noexcept;
bool bf16_to_floats(const std::byte* bytes, std::span<float> out) noexcept;

} // namespace ddactor
