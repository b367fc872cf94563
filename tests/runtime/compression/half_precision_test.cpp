// The fp16/bf16 conversions against independent references: every 16-bit pattern decoded by the
// IEEE formula, rounding checked at and around every midpoint between neighbouring values (ties
// to even), clamping, and, where the compiler has _Float16, agreement with its conversion.
#include "runtime/compression/half_precision.hpp"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

namespace ddactor {
namespace {

double fp16_reference(std::uint16_t bits) {
  const int sign = (bits & 0x8000) != 0 ? -1 : 1;
  const int exponent = (bits >> 10) & 0x1f;
  const int mantissa = bits & 0x3ff;
  if (exponent == 0)
    return sign * std::ldexp(mantissa, -24);
  return sign * std::ldexp(1024 + mantissa, exponent - 25);
}

TEST(half_precision, fp16_to_float_matches_the_ieee_formula_for_every_finite_pattern) {
  int finite = 0;
  for (std::uint32_t bits = 0; bits <= 0xffff; ++bits) {
    const auto half = static_cast<std::uint16_t>(bits);
    if (!is_finite_fp16_bits(half))
      continue;
    ++finite;
    ASSERT_EQ(static_cast<double>(fp16_bits_to_float(half)), fp16_reference(half)) << bits;
    // Every finite pattern survives a round trip, the sign of zero included.
    ASSERT_EQ(float_to_fp16_bits(fp16_bits_to_float(half)), half) << bits;
  }
  EXPECT_EQ(finite, 2 * 31 * 1024);
}

TEST(half_precision, fp16_rounds_to_nearest_even_at_every_midpoint) {
  // Between each positive finite value and the next: the exact midpoint goes to the even pattern,
  // one float ulp either side goes to the nearer one.
  for (std::uint16_t low = 0; low < fp16_max_finite_bits; ++low) {
    const auto high = static_cast<std::uint16_t>(low + 1);
    const float midpoint =
      static_cast<float>((fp16_reference(low) + fp16_reference(high)) / 2.0); // exact in float
    const std::uint16_t even = (low & 1) == 0 ? low : high;
    ASSERT_EQ(float_to_fp16_bits(midpoint), even) << low;
    ASSERT_EQ(float_to_fp16_bits(std::nextafter(midpoint, 0.0f)), low) << low;
    ASSERT_EQ(float_to_fp16_bits(std::nextafter(midpoint, 1e9f)), high) << low;
    ASSERT_EQ(float_to_fp16_bits(-midpoint), even | 0x8000) << low;
  }
}

TEST(half_precision, fp16_exact_values_and_clamping) {
  EXPECT_EQ(float_to_fp16_bits(0.5f), 0x3800);
  EXPECT_EQ(float_to_fp16_bits(-2.0f), 0xc000);
  EXPECT_EQ(float_to_fp16_bits(65504.0f), 0x7bff);
  EXPECT_EQ(float_to_fp16_bits(-0.0f), 0x8000);
  EXPECT_EQ(float_to_fp16_bits(0x1p-24f), 0x0001);  // smallest subnormal
  EXPECT_EQ(float_to_fp16_bits(0x1p-25f), 0x0000);  // tie between 0 and 2^-24 goes to even 0
  EXPECT_EQ(float_to_fp16_bits(0x1.8p-25f), 0x0001);
  EXPECT_EQ(float_to_fp16_bits(0x1p-14f), 0x0400);  // smallest normal
  // Beyond the range: the largest finite value instead of Inf.
  EXPECT_EQ(float_to_fp16_bits(65520.0f), 0x7bff);
  EXPECT_EQ(float_to_fp16_bits(1e30f), 0x7bff);
  EXPECT_EQ(float_to_fp16_bits(-std::numeric_limits<float>::max()), 0xfbff);
  EXPECT_EQ(float_to_fp16_bits(1e-30f), 0x0000);
}

#if defined(__FLT16_MAX__)
TEST(half_precision, fp16_agrees_with_the_compilers_float16_on_random_floats) {
  std::mt19937 rng(3);
  std::uniform_int_distribution<std::uint32_t> any_bits;
  for (int i = 0; i < 2000000; ++i) {
    // Keep exponents in and around the fp16 range, where rounding is interesting.
    std::uint32_t bits = any_bits(rng);
    bits = (bits & 0x807fffffu) | ((100u + (bits >> 23) % 45u) << 23);
    const float value = std::bit_cast<float>(bits);
    const _Float16 reference = static_cast<_Float16>(value);
    std::uint16_t expected;
    std::memcpy(&expected, &reference, 2);
    if (!is_finite_fp16_bits(expected))
      expected = static_cast<std::uint16_t>((expected & 0x8000) | fp16_max_finite_bits);
    ASSERT_EQ(float_to_fp16_bits(value), expected) << value;
  }
}
#endif

TEST(half_precision, bf16_rounds_to_nearest_even_and_clamps) {
  EXPECT_EQ(float_to_bf16_bits(1.0f), 0x3f80);
  EXPECT_EQ(float_to_bf16_bits(-2.0f), 0xc000);
  // 1 + 2^-8 lies halfway between 1 and 1 + 2^-7: ties to the even pattern 0x3f80.
  EXPECT_EQ(float_to_bf16_bits(1.0f + 0x1p-8f), 0x3f80);
  EXPECT_EQ(float_to_bf16_bits(1.0f + 0x1p-7f + 0x1p-8f), 0x3f82);
  EXPECT_EQ(float_to_bf16_bits(std::nextafter(1.0f + 0x1p-8f, 2.0f)), 0x3f81);
  EXPECT_EQ(float_to_bf16_bits(std::numeric_limits<float>::max()), 0x7f7f);
  EXPECT_EQ(float_to_bf16_bits(-std::numeric_limits<float>::max()), 0xff7f);
  EXPECT_EQ(float_to_bf16_bits(std::numeric_limits<float>::denorm_min()), 0x0000);
  EXPECT_EQ(float_to_bf16_bits(0x1p-133f), 0x0001); // smallest bf16 subnormal
  for (std::uint32_t bits = 0; bits <= 0xffff; ++bits) {
    const auto half = static_cast<std::uint16_t>(bits);
    if (is_finite_bf16_bits(half)) {
      ASSERT_EQ(float_to_bf16_bits(bf16_bits_to_float(half)), half) << bits;
    }
  }
}

TEST(half_precision, bf16_rounds_to_nearest_even_at_random_midpoints) {
  std::mt19937 rng(5);
  std::uniform_int_distribution<std::uint32_t> patterns(0, 0x7f7e);
  for (int i = 0; i < 100000; ++i) {
    const auto low = static_cast<std::uint16_t>(patterns(rng));
    const std::uint32_t midpoint_bits = (static_cast<std::uint32_t>(low) << 16) | 0x8000u;
    const float midpoint = std::bit_cast<float>(midpoint_bits);
    const std::uint16_t even = (low & 1) == 0 ? low : static_cast<std::uint16_t>(low + 1);
    ASSERT_EQ(float_to_bf16_bits(midpoint), even);
    ASSERT_EQ(float_to_bf16_bits(std::bit_cast<float>(midpoint_bits - 1)), low);
    ASSERT_EQ(float_to_bf16_bits(std::bit_cast<float>(midpoint_bits + 1)), low + 1);
  }
}

TEST(half_precision, bulk_conversions_report_non_finite_values) {
  for (const std::size_t n : {1u, 5u, 1023u, 1024u, 1025u, 5000u}) {
    std::vector<float> values(n, 1.5f);
    std::vector<std::byte> bytes(2 * n + 1);
    std::vector<float> back(n);
    // Unaligned byte buffers must work as well.
    EXPECT_TRUE(floats_to_fp16(values, bytes.data() + 1));
    EXPECT_TRUE(fp16_to_floats(bytes.data() + 1, back));
    EXPECT_EQ(back, values);
    EXPECT_TRUE(floats_to_bf16(values, bytes.data() + 1));
    EXPECT_TRUE(bf16_to_floats(bytes.data() + 1, back));
    EXPECT_EQ(back, values);

    values[n - 1] = std::numeric_limits<float>::quiet_NaN();
    EXPECT_FALSE(floats_to_fp16(values, bytes.data()));
    EXPECT_FALSE(floats_to_bf16(values, bytes.data()));
    values[n - 1] = -std::numeric_limits<float>::infinity();
    EXPECT_FALSE(floats_to_fp16(values, bytes.data()));
    EXPECT_FALSE(floats_to_bf16(values, bytes.data()));

    const std::uint16_t fp16_nan = 0x7e00;
    std::memcpy(bytes.data() + 2 * (n - 1), &fp16_nan, 2);
    EXPECT_FALSE(fp16_to_floats(bytes.data(), back));
    const std::uint16_t bf16_infinity = 0xff80;
    std::memcpy(bytes.data() + 2 * (n - 1), &bf16_infinity, 2);
    EXPECT_FALSE(bf16_to_floats(bytes.data(), back));
  }
}

} // namespace
} // namespace ddactor
