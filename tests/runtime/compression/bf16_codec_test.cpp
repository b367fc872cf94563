// The bf16 codec: error bounds over the size and distribution sweep (with and without zstd),
// exactly representable values, clamping, NaN/Inf refusal on both sides.
#include "runtime/compression/bf16_codec.hpp"

#include "codec_test_inputs.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <tuple>

namespace ddactor {
namespace {

using codec_test::distribution;

// Half a bf16 ulp: 2^-8 relative (8 significant bits); float32 range, so no clamping in practice.
float expected_bound(float x) {
  return std::max(std::fabs(x) * 0x1p-8f, 0x1p-133f);
}
float clamp_to_range(float x) { return x; }

class bf16_codec_round_trip
  : public testing::TestWithParam<std::tuple<std::size_t, distribution, int>> {};

TEST_P(bf16_codec_round_trip, stays_within_half_an_ulp) {
  const auto [n, shape, zstd_level] = GetParam();
  const std::vector<float> x = codec_test::make_input(shape, n);
  codec_options options;
  options.zstd_level = zstd_level;
  bf16_codec codec(options);
  const std::vector<std::byte> frame = codec.encode(x);
  if (zstd_level == 0) {
    EXPECT_EQ(frame.size(), frame_header_size + 2 * n);
  }
  std::vector<float> y(n, -1.0f);
  codec.decode(frame, y);
  for (std::size_t i = 0; i < n; ++i) {
    ASSERT_LE(std::fabs(y[i] - clamp_to_range(x[i])), expected_bound(x[i])) << i << ": " << x[i];
  }
  if (shape == distribution::zeros) {
    EXPECT_TRUE(codec_test::bit_identical(x, y));
  }
  if (shape == distribution::normal && n > 1000) {
    EXPECT_LT(codec_test::relative_error(x, y), 2.5e-3);
  }
}

INSTANTIATE_TEST_SUITE_P(
  sweep, bf16_codec_round_trip,
  testing::Combine(testing::ValuesIn(codec_test::sweep_sizes),
                   testing::Values(distribution::normal, distribution::heavy_tailed,
                                   distribution::zeros),
                   testing::Values(0, 3)),
  [](const auto& info) {
    return "n" + std::to_string(std::get<0>(info.param)) + "_" +
           codec_test::distribution_name(std::get<1>(info.param)) + "_zstd" +
           std::to_string(std::get<2>(info.param));
  });

TEST(bf16_codec, exactly_representable_values_round_trip_exactly) {
  bf16_codec codec;
  for (const float exact : {0.5f, -2.0f, 65280.0f, 1.0f, -0.0f, 0x1p-126f, 0x1p100f, 1.5f, -3.0f,
                            0x1.fep127f}) {
    const std::vector<float> x = {exact};
    std::vector<float> y(1);
    codec.decode(codec.encode(x), y);
    EXPECT_TRUE(codec_test::bit_identical(x, y)) << exact << " came back as " << y[0];
  }
}

TEST(bf16_codec, values_beyond_the_range_clamp_to_the_largest_finite_value) {
  bf16_codec codec;
  const float max = std::numeric_limits<float>::max();
  const std::vector<float> x = {max, -max};
  const std::vector<float> expected = {0x1.fep127f, -0x1.fep127f};
  std::vector<float> y(x.size());
  codec.decode(codec.encode(x), y);
  EXPECT_EQ(y, expected);
}

TEST(bf16_codec, refuses_nan_and_inf_input) {
  bf16_codec codec;
  for (const float bad : {std::numeric_limits<float>::quiet_NaN(),
                          std::numeric_limits<float>::infinity(),
                          -std::numeric_limits<float>::infinity()}) {
    std::vector<float> x(3000, 1.0f);
    x[2999] = bad;
    EXPECT_THROW(codec.encode(x), codec_error);
  }
}

TEST(bf16_codec, refuses_non_finite_patterns_in_the_frame_and_zero_fills_the_output) {
  bf16_codec codec;
  const std::vector<float> x(2000, 2.0f);
  for (const std::uint16_t bad : {0x7f80, 0xff80, 0x7fc0, 0xffc1, 0x7f81}) {
    std::vector<std::byte> frame = codec.encode(x);
    codec_test::patch(frame, frame_header_size + 2 * 1500, bad);
    std::vector<float> y(2000, 3.0f);
    EXPECT_THROW(codec.decode(frame, y), codec_error);
    EXPECT_EQ(y, std::vector<float>(2000, 0.0f));
  }
}

TEST(bf16_codec, halves_the_bytes) {
  bf16_codec codec;
  EXPECT_DOUBLE_EQ(codec.estimated_ratio(1000), (20.0 + 2000.0) / 4000.0);
  const std::vector<float> x(1000, 0.25f);
  EXPECT_EQ(codec.encode(x).size(), 2020u);
}

} // namespace
} // namespace ddactor
