// The int8 blockwise codec: the per-value bound (half of the block's scale, absmax / 127) over the
// size, distribution and block-size sweep, with and without zstd; all-zero blocks exact; a frame's
// scales and values checked as hostile input.
#include "runtime/compression/int8_blockwise_codec.hpp"

#include "codec_test_inputs.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <tuple>

namespace ddactor {
namespace {

using codec_test::distribution;

class int8_codec_round_trip
  : public testing::TestWithParam<std::tuple<std::size_t, distribution, int, int>> {};

TEST_P(int8_codec_round_trip, stays_within_half_a_step_of_each_block) {
  const auto [n, shape, block_size, zstd_level] = GetParam();
  const std::vector<float> x = codec_test::make_input(shape, n);
  codec_options options;
  options.int8_block_size = block_size;
  options.zstd_level = zstd_level;
  int8_blockwise_codec codec(options);
  const std::vector<std::byte> frame = codec.encode(x);
  const std::size_t blocks = (n + block_size - 1) / block_size;
  if (zstd_level == 0) {
    EXPECT_EQ(frame.size(), frame_header_size + 4 * blocks + n);
  }
  std::vector<float> y(n, -1.0f);
  codec.decode(frame, y);
  for (std::size_t start = 0; start < n; start += block_size) {
    const std::size_t end = std::min(n, start + block_size);
    float max_magnitude = 0.0f;
    for (std::size_t i = start; i < end; ++i)
      max_magnitude = std::max(max_magnitude, std::fabs(x[i]));
    const float step = max_magnitude / 127.0f;
    for (std::size_t i = start; i < end; ++i) {
      ASSERT_LE(std::fabs(x[i] - y[i]), 0.5f * step * (1.0f + 1e-5f)) << i;
      // The extreme of each block is exact up to float rounding of the scale.
      if (std::fabs(x[i]) == max_magnitude) {
        ASSERT_NEAR(y[i], x[i], max_magnitude * 1e-6f) << i;
      }
    }
  }
  if (shape == distribution::zeros) {
    EXPECT_TRUE(codec_test::bit_identical(x, y));
  }
  if (shape == distribution::normal && n > 1000 && block_size == 256) {
    EXPECT_LT(codec_test::relative_error(x, y), 0.012);
  }
}

INSTANTIATE_TEST_SUITE_P(
  sweep, int8_codec_round_trip,
  testing::Combine(testing::ValuesIn(codec_test::sweep_sizes),
                   testing::Values(distribution::normal, distribution::heavy_tailed,
                                   distribution::zeros),
                   testing::Values(1, 3, 256, 4096), testing::Values(0, 3)),
  [](const auto& info) {
    return "n" + std::to_string(std::get<0>(info.param)) + "_" +
           codec_test::distribution_name(std::get<1>(info.param)) + "_block" +
           std::to_string(std::get<2>(info.param)) + "_zstd" +
           std::to_string(std::get<3>(info.param));
  });

TEST(int8_blockwise_codec, all_zero_blocks_are_exact_beside_others) {
  codec_options options;
  options.int8_block_size = 4;
  int8_blockwise_codec codec(options);
  const std::vector<float> x = {0, 0, 0, 0, 1.0f, -0.5f, 0.25f, 3.0f, 0, -0.0f, 0, 0};
  std::vector<float> y(x.size());
  codec.decode(codec.encode(x), y);
  for (std::size_t i : {0u, 1u, 2u, 3u, 8u, 10u, 11u}) {
    EXPECT_EQ(y[i], 0.0f) << i;
  }
  EXPECT_FLOAT_EQ(y[7], 3.0f);
}

TEST(int8_blockwise_codec, multiples_of_the_step_round_trip_exactly) {
  int8_blockwise_codec codec;
  std::vector<float> x(256);
  for (std::size_t i = 0; i < x.size(); ++i)
    x[i] = static_cast<float>(static_cast<int>(i % 255) - 127) * 0.5f; // steps of 0.5, max 63.5
  std::vector<float> y(x.size());
  codec.decode(codec.encode(x), y);
  EXPECT_EQ(x, y);
}

TEST(int8_blockwise_codec, extreme_magnitudes_stay_finite) {
  int8_blockwise_codec codec;
  const float big = std::numeric_limits<float>::max();
  const float tiny = std::numeric_limits<float>::denorm_min();
  for (const std::vector<float>& x : {std::vector<float>{big, -big, 1.0f, big / 3.0f},
                                      std::vector<float>{tiny, -tiny, 3 * tiny, 0.0f},
                                      std::vector<float>{1e-40f, -2e-40f, 5e-39f}}) {
    std::vector<float> y(x.size());
    codec.decode(codec.encode(x), y);
    float max_magnitude = 0.0f;
    for (const float v : x)
      max_magnitude = std::max(max_magnitude, std::fabs(v));
    for (std::size_t i = 0; i < x.size(); ++i) {
      EXPECT_TRUE(std::isfinite(y[i]));
      // Below ~1e-43 the scale itself underflows float32; such blocks come back as zeros.
      EXPECT_LE(std::fabs(x[i] - y[i]), std::max(max_magnitude / 127.0f, 2e-43f)) << i;
    }
  }
}

TEST(int8_blockwise_codec, refuses_nan_and_inf_input) {
  int8_blockwise_codec codec;
  for (const float bad : {std::numeric_limits<float>::quiet_NaN(),
                          std::numeric_limits<float>::infinity(),
                          -std::numeric_limits<float>::infinity()}) {
    std::vector<float> x(1000, 1.0f);
    x[600] = bad;
    EXPECT_THROW(codec.encode(x), codec_error);
  }
}

TEST(int8_blockwise_codec, refuses_bad_scales_and_values_in_the_frame) {
  int8_blockwise_codec codec;
  const std::vector<float> x(600, 1.0f); // 3 blocks of 256
  const std::size_t scales = frame_header_size;
  const std::size_t values = scales + 3 * 4;
  struct corruption { std::size_t offset; std::uint32_t bits; int bytes; };
  for (const corruption c : {corruption{scales + 4, 0x7fc00000u, 4},  // NaN scale
                             corruption{scales + 8, 0x7f800000u, 4},  // Inf scale
                             corruption{scales, 0xbf800000u, 4},      // negative scale
                             corruption{scales, 0x80000000u, 4},      // negative zero
                             corruption{scales, 0x7f7fffffu, 4},      // 127 * FLT_MAX overflows
                             corruption{values + 5, 0x80u, 1}}) {     // -128 is never encoded
    std::vector<std::byte> frame = codec.encode(x);
    std::memcpy(frame.data() + c.offset, &c.bits, c.bytes);
    std::vector<float> y(x.size(), 3.0f);
    EXPECT_THROW(codec.decode(frame, y), codec_error) << c.offset;
    EXPECT_EQ(y, std::vector<float>(x.size(), 0.0f));
  }
}

TEST(int8_blockwise_codec, refuses_impossible_block_sizes_in_the_frame) {
  int8_blockwise_codec codec;
  const std::vector<float> x(10, 1.0f);
  for (const std::uint32_t block_size : {0u, (1u << 20) + 1, 0xffffffffu}) {
    std::vector<std::byte> frame = codec.encode(x);
    codec_test::patch(frame, 16, block_size);
    std::vector<float> y(x.size());
    EXPECT_THROW(codec.decode(frame, y), codec_error) << block_size;
  }
}

TEST(int8_blockwise_codec, a_quarter_of_the_bytes) {
  int8_blockwise_codec codec;
  EXPECT_DOUBLE_EQ(codec.estimated_ratio(1024), (20.0 + 16.0 + 1024.0) / 4096.0);
  const std::vector<float> x(1024, 0.25f);
  EXPECT_EQ(codec.encode(x).size(), 20u + 16u + 1024u);
}

TEST(int8_blockwise_codec, refuses_invalid_block_size_options) {
  for (const int block_size : {0, -1, (1 << 20) + 1}) {
    codec_options options;
    options.int8_block_size = block_size;
    EXPECT_THROW(int8_blockwise_codec{options}, codec_error) << block_size;
  }
}

} // namespace
} // namespace ddactor
