// The adaptive codec: the size rule (below the threshold exact, from it on int8), frames that any
// peer decodes, and refusal of frames of other codecs.
#include "runtime/compression/adaptive_codec.hpp"

#include "runtime/compression/codec_factory.hpp"
#include "runtime/compression/fp16_codec.hpp"

#include "codec_test_inputs.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <tuple>

namespace ddactor {
namespace {

using codec_test::distribution;

class adaptive_codec_round_trip
  : public testing::TestWithParam<std::tuple<std::size_t, distribution, int>> {};

TEST_P(adaptive_codec_round_trip, is_exact_below_the_threshold_and_int8_from_it_on) {
  const auto [n, shape, zstd_level] = GetParam();
  codec_options options;
  options.adaptive_exact_below = 256;
  options.zstd_level = zstd_level;
  adaptive_codec codec(options);
  const std::vector<float> x = codec_test::make_input(shape, n);
  const std::vector<std::byte> frame = codec.encode(x);
  const frame_header header = read_frame_header(frame);
  EXPECT_EQ(header.codec, n < 256 ? codec_id::none : codec_id::int8_blockwise);
  EXPECT_EQ(codec.sends_exact(n), n < 256);
  std::vector<float> y(n, -1.0f);
  codec.decode(frame, y);
  std::vector<float> z(n, -1.0f);
  decode_any(frame, z);
  EXPECT_TRUE(codec_test::bit_identical(y, z));
  if (n < 256 || shape == distribution::zeros) {
    EXPECT_TRUE(codec_test::bit_identical(x, y));
  } else {
    float max_magnitude = 0.0f; // one bound over all blocks is enough here
    for (const float v : x)
      max_magnitude = std::max(max_magnitude, std::fabs(v));
    for (std::size_t i = 0; i < n; ++i)
      ASSERT_LE(std::fabs(x[i] - y[i]), max_magnitude / 254.0f * 1.0001f) << i;
  }
}

INSTANTIATE_TEST_SUITE_P(
  sweep, adaptive_codec_round_trip,
  testing::Combine(testing::ValuesIn(codec_test::sweep_sizes),
                   testing::Values(distribution::normal, distribution::heavy_tailed,
                                   distribution::zeros),
                   testing::Values(0, 3)),
  [](const auto& info) {
    return "n" + std::to_string(std::get<0>(info.param)) + "_" +
           codec_test::distribution_name(std::get<1>(info.param)) + "_zstd" +
           std::to_string(std::get<2>(info.param));
  });

TEST(adaptive_codec, default_threshold_keeps_norms_and_biases_exact) {
  adaptive_codec codec;
  EXPECT_TRUE(codec.sends_exact(4095));
  EXPECT_FALSE(codec.sends_exact(4096));
  EXPECT_DOUBLE_EQ(codec.estimated_ratio(1000), (20.0 + 4000.0) / 4000.0);
  EXPECT_DOUBLE_EQ(codec.estimated_ratio(4096), (20.0 + 64.0 + 4096.0) / 16384.0);
}

TEST(adaptive_codec, refuses_frames_of_other_codecs_and_nan_input) {
  adaptive_codec codec;
  const std::vector<float> x(10, 1.0f);
  const std::vector<std::byte> frame = fp16_codec().encode(x);
  std::vector<float> y(10);
  EXPECT_THROW(codec.decode(frame, y), codec_error);
  std::vector<float> bad(5000, 1.0f);
  bad[4000] = std::nanf("");
  EXPECT_THROW(codec.encode(bad), codec_error);
  bad.resize(100);
  bad[50] = std::nanf("");
  EXPECT_THROW(codec.encode(bad), codec_error);
}

} // namespace
} // namespace ddactor
