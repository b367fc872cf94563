// The exact codec: bit-identical round trips over the size and distribution sweep, with and
// without zstd; refusal of NaN/Inf input and of NaN/Inf bit patterns in a frame.
#include "runtime/compression/none_codec.hpp"

#include "codec_test_inputs.hpp"

#include <gtest/gtest.h>

#include <limits>
#include <tuple>

namespace ddactor {
namespace {

using codec_test::distribution;

class none_codec_round_trip
  : public testing::TestWithParam<std::tuple<std::size_t, distribution, int>> {};

TEST_P(none_codec_round_trip, is_bit_identical) {
  const auto [n, shape, zstd_level] = GetParam();
  const std::vector<float> x = codec_test::make_input(shape, n);
  codec_options options;
  options.zstd_level = zstd_level;
  none_codec codec(options);
  const std::vector<std::byte> frame = codec.encode(x);
  if (zstd_level == 0) {
    EXPECT_EQ(frame.size(), frame_header_size + 4 * n);
  }
  std::vector<float> y(n, -1.0f);
  codec.decode(frame, y);
  EXPECT_TRUE(codec_test::bit_identical(x, y));
}

INSTANTIATE_TEST_SUITE_P(
  sweep, none_codec_round_trip,
  testing::Combine(testing::ValuesIn(codec_test::sweep_sizes),
                   testing::Values(distribution::normal, distribution::heavy_tailed,
                                   distribution::zeros),
                   testing::Values(0, 3)),
  [](const auto& info) {
    return "n" + std::to_string(std::get<0>(info.param)) + "_" +
           codec_test::distribution_name(std::get<1>(info.param)) + "_zstd" +
           std::to_string(std::get<2>(info.param));
  });

TEST(none_codec, refuses_nan_and_inf_input) {
  none_codec codec;
  for (const float bad : {std::numeric_limits<float>::quiet_NaN(),
                          std::numeric_limits<float>::signaling_NaN(),
                          std::numeric_limits<float>::infinity(),
                          -std::numeric_limits<float>::infinity()}) {
    std::vector<float> x(100, 1.0f);
    x[37] = bad;
    EXPECT_THROW(codec.encode(x), codec_error);
  }
}

TEST(none_codec, refuses_non_finite_patterns_in_the_frame_and_zero_fills_the_output) {
  none_codec codec;
  const std::vector<float> x(10, 2.0f);
  for (const std::uint32_t bad :
       {0x7fc00000u, 0xffc00001u, 0x7f800000u, 0xff800000u, 0x7f800001u}) {
    std::vector<std::byte> frame = codec.encode(x);
    codec_test::patch(frame, frame_header_size + 4 * 9, bad);
    std::vector<float> y(10, 3.0f);
    EXPECT_THROW(codec.decode(frame, y), codec_error);
    EXPECT_EQ(y, std::vector<float>(10, 0.0f));
  }
}

TEST(none_codec, estimated_ratio_counts_the_header) {
  none_codec codec;
  EXPECT_DOUBLE_EQ(codec.estimated_ratio(1000), (20.0 + 4000.0) / 4000.0);
  EXPECT_DOUBLE_EQ(codec.estimated_ratio(0), 1.0);
  const std::vector<float> x(1000, 0.25f);
  const double actual = static_cast<double>(codec.encode(x).size()) / 4000.0;
  EXPECT_DOUBLE_EQ(actual, codec.estimated_ratio(1000));
}

TEST(none_codec, zstd_shrinks_a_compressible_input) {
  codec_options options;
  options.zstd_level = 1;
  none_codec compressed(options);
  none_codec raw;
  std::vector<float> x(100000);
  for (std::size_t i = 0; i < x.size(); ++i)
    x[i] = static_cast<float>(i % 16); // few distinct patterns
  const std::vector<std::byte> small = compressed.encode(x);
  EXPECT_LT(small.size() * 20, raw.encode(x).size());
  std::vector<float> y(x.size());
  compressed.decode(small, y);
  EXPECT_EQ(x, y);
}

} // namespace
} // namespace ddactor
