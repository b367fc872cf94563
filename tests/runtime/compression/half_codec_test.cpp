// The 16-bit codecs (fp16 and bf16), each against its format's own numbers: error bounds over
// the size and distribution sweep (with and without zstd), exactly representable values,
// clamping, NaN/Inf refusal on both sides, the frame's size.
#include "runtime/compression/half_codec.hpp"

#include "codec_test_inputs.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <tuple>

namespace ddactor {
namespace {

using codec_test::distribution;

// What a format promises, to test its codec against.
struct format_facts {
  half_format format;
  std::string name;
  float (*in_range)(float);            // the value the format clamps x to
  float (*half_ulp)(float);            // the largest rounding error at (clamped) x
  double normal_relative_error;        // bound on the relative error of normal data
  std::vector<float> exact;            // values that round-trip bit for bit
  std::vector<float> beyond_range;     // and what they come back as:
  std::vector<float> clamped;
  std::vector<std::uint16_t> non_finite;  // NaN and Inf bit patterns
};

const std::vector<format_facts>& formats() {
  static const std::vector<format_facts> all = {
    // 11 significant bits: half an ulp is 2^-11 relative for normals, 2^-25 absolute for
    // subnormals; values beyond 65504 come back as +-65504.
    {half_format::fp16, "fp16", [](float x) { return std::clamp(x, -65504.0f, 65504.0f); },
     [](float x) {
       return std::max(std::fabs(std::clamp(x, -65504.0f, 65504.0f)) * 0x1p-11f, 0x1p-25f);
     },
     3e-4,
     {0.5f, -2.0f, 65504.0f, -65504.0f, 0.0f, 1.0f, 0x1p-24f, 0x1p-14f, 1023.5f,
      -0.000030517578125f},
     {70000.0f, -1e30f, 65519.0f, 65520.0f},
     {65504.0f, -65504.0f, 65504.0f, 65504.0f},
     {0x7c00, 0xfc00, 0x7e00, 0xfe01, 0x7c01}},
    // 8 significant bits: 2^-8 relative; float32's range, so no clamping in practice.
    {half_format::bf16, "bf16", [](float x) { return x; },
     [](float x) { return std::max(std::fabs(x) * 0x1p-8f, 0x1p-133f); },
     2.5e-3,
     {0.5f, -2.0f, 65280.0f, 1.0f, -0.0f, 0x1p-126f, 0x1p100f, 1.5f, -3.0f, 0x1.fep127f},
     {std::numeric_limits<float>::max(), -std::numeric_limits<float>::max()},
     {0x1.fep127f, -0x1.fep127f},
     {0x7f80, 0xff80, 0x7fc0, 0xffc1, 0x7f81}},
  };
  return all;
}

std::string format_name(const testing::TestParamInfo<std::size_t>& info) {
  return formats()[info.param].name;
}

class half_codec_round_trip
  : public testing::TestWithParam<std::tuple<std::size_t, std::size_t, distribution, int>> {};

TEST_P(half_codec_round_trip, stays_within_half_an_ulp) {
  const auto [format, n, shape, zstd_level] = GetParam();
  const format_facts& facts = formats()[format];
  const std::vector<float> x = codec_test::make_input(shape, n);
  codec_options options;
  options.zstd_level = zstd_level;
  half_codec codec(facts.format, options);
  const std::vector<std::byte> frame = codec.encode(x);
  if (zstd_level == 0) {
    EXPECT_EQ(frame.size(), frame_header_size + 2 * n);
  }
  std::vector<float> y(n, -1.0f);
  codec.decode(frame, y);
  for (std::size_t i = 0; i < n; ++i) {
    ASSERT_LE(std::fabs(y[i] - facts.in_range(x[i])), facts.half_ulp(x[i])) << i << ": " << x[i];
  }
  if (shape == distribution::zeros) {
    EXPECT_TRUE(codec_test::bit_identical(x, y));
  }
  if (shape == distribution::normal && n > 1000) {
    EXPECT_LT(codec_test::relative_error(x, y), facts.normal_relative_error);
  }
}

INSTANTIATE_TEST_SUITE_P(
  sweep, half_codec_round_trip,
  testing::Combine(testing::Values(std::size_t{0}, std::size_t{1}),
                   testing::ValuesIn(codec_test::sweep_sizes),
                   testing::Values(distribution::normal, distribution::heavy_tailed,
                                   distribution::zeros),
                   testing::Values(0, 3)),
  [](const auto& info) {
    return formats()[std::get<0>(info.param)].name + "_n" +
           std::to_string(std::get<1>(info.param)) + "_" +
           codec_test::distribution_name(std::get<2>(info.param)) + "_zstd" +
           std::to_string(std::get<3>(info.param));
  });

class half_codec_format : public testing::TestWithParam<std::size_t> {
 protected:
  const format_facts& facts = formats()[GetParam()];
  half_codec codec{facts.format};
};

TEST_P(half_codec_format, is_named_after_its_format) {
  EXPECT_EQ(codec.name(), facts.name);
  EXPECT_EQ(codec_name(codec.id()), facts.name);
}

TEST_P(half_codec_format, exactly_representable_values_round_trip_exactly) {
  for (const float exact : facts.exact) {
    const std::vector<float> x = {exact};
    std::vector<float> y(1);
    codec.decode(codec.encode(x), y);
    EXPECT_TRUE(codec_test::bit_identical(x, y)) << exact << " came back as " << y[0];
  }
}

TEST_P(half_codec_format, values_beyond_the_range_clamp_to_the_largest_finite_value) {
  std::vector<float> y(facts.beyond_range.size());
  codec.decode(codec.encode(facts.beyond_range), y);
  EXPECT_EQ(y, facts.clamped);
}

TEST_P(half_codec_format, refuses_nan_and_inf_input) {
  for (const float bad : {std::numeric_limits<float>::quiet_NaN(),
                          std::numeric_limits<float>::infinity(),
                          -std::numeric_limits<float>::infinity()}) {
    std::vector<float> x(3000, 1.0f);
    x[2999] = bad;
    EXPECT_THROW(codec.encode(x), codec_error);
  }
}

TEST_P(half_codec_format, refuses_non_finite_patterns_in_the_frame_and_zero_fills_the_output) {
  const std::vector<float> x(2000, 2.0f);
  for (const std::uint16_t bad : facts.non_finite) {
    std::vector<std::byte> frame = codec.encode(x);
    codec_test::patch(frame, frame_header_size + 2 * 1500, bad);
    std::vector<float> y(2000, 3.0f);
    EXPECT_THROW(codec.decode(frame, y), codec_error) << std::hex << bad;
    EXPECT_EQ(y, std::vector<float>(2000, 0.0f));
  }
}

TEST_P(half_codec_format, halves_the_bytes) {
  EXPECT_DOUBLE_EQ(codec.estimated_ratio(1000), (20.0 + 2000.0) / 4000.0);
  const std::vector<float> x(1000, 0.25f);
  EXPECT_EQ(codec.encode(x).size(), 2020u);
}

// A frame of one format is not the other's.
TEST(half_codec, refuses_the_other_formats_frame) {
  const std::vector<float> x(10, 1.0f);
  std::vector<float> y(10);
  EXPECT_THROW(half_codec(half_format::bf16).decode(half_codec(half_format::fp16).encode(x), y),
               codec_error);
  EXPECT_THROW(half_codec(half_format::fp16).decode(half_codec(half_format::bf16).encode(x), y),
               codec_error);
}

INSTANTIATE_TEST_SUITE_P(each, half_codec_format,
                         testing::Values(std::size_t{0}, std::size_t{1}), format_name);

} // namespace
} // namespace ddactor
