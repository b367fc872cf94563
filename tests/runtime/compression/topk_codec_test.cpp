// The top-k codec: exactly the k largest magnitudes are kept (ties included), the rest decode to
// zero; the codec keeps no state (error feedback is the round's: chunk_coding_test.cpp); hostile
// sparse payloads are refused.
#include "runtime/compression/topk_codec.hpp"

#include "codec_test_inputs.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <tuple>

namespace ddactor {
namespace {

using codec_test::distribution;

codec_options with_fraction(double fraction, int zstd_level = 0) {
  codec_options options;
  options.topk_fraction = fraction;
  options.zstd_level = zstd_level;
  return options;
}

// Indices of the k largest magnitudes; ties broken by the lower index, as the encoder does.
std::vector<bool> largest_indices(const std::vector<float>& x, std::size_t k) {
  std::vector<std::size_t> order(x.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&x](std::size_t a, std::size_t b) {
    return std::fabs(x[a]) > std::fabs(x[b]);
  });
  std::vector<bool> kept(x.size(), false);
  for (std::size_t j = 0; j < k; ++j)
    kept[order[j]] = true;
  return kept;
}

class topk_codec_round_trip
  : public testing::TestWithParam<std::tuple<std::size_t, distribution, double, int>> {};

TEST_P(topk_codec_round_trip, keeps_exactly_the_k_largest_magnitudes) {
  const auto [n, shape, fraction, zstd_level] = GetParam();
  const std::vector<float> x = codec_test::make_input(shape, n);
  topk_codec codec(with_fraction(fraction, zstd_level));
  const std::size_t k = codec.kept_count(n);
  EXPECT_EQ(k, n == 0 ? 0 : std::clamp<std::size_t>(std::llround(fraction * n), 1, n));
  std::vector<float> y(n, -1.0f);
  codec.decode(codec.encode(x), y);
  const std::vector<bool> kept = largest_indices(x, k);
  for (std::size_t i = 0; i < n; ++i) {
    if (kept[i]) {
      ASSERT_EQ(y[i], x[i]) << i;
    } else {
      ASSERT_EQ(y[i], 0.0f) << i;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
  sweep, topk_codec_round_trip,
  testing::Combine(testing::ValuesIn(codec_test::sweep_sizes),
                   testing::Values(distribution::normal, distribution::heavy_tailed,
                                   distribution::zeros),
                   testing::Values(0.01, 0.3, 1.0), testing::Values(0, 3)),
  [](const auto& info) {
    return "n" + std::to_string(std::get<0>(info.param)) + "_" +
           codec_test::distribution_name(std::get<1>(info.param)) + "_permille" +
           std::to_string(std::llround(std::get<2>(info.param) * 1000)) + "_zstd" +
           std::to_string(std::get<3>(info.param));
  });

TEST(topk_codec, keeps_at_least_one_entry_and_takes_ties_in_index_order) {
  topk_codec codec(with_fraction(1e-9));
  const std::vector<float> x = {1.0f, -3.0f, 3.0f, 2.0f};
  std::vector<float> y(x.size());
  codec.decode(codec.encode(x), y);
  EXPECT_EQ(y, (std::vector<float>{0.0f, -3.0f, 0.0f, 0.0f}));

  topk_codec half(with_fraction(0.5));
  const std::vector<float> equal(10, 0.5f);
  std::vector<float> z(equal.size());
  half.decode(half.encode(equal), z);
  EXPECT_EQ(z, (std::vector<float>{0.5f, 0.5f, 0.5f, 0.5f, 0.5f, 0, 0, 0, 0, 0}));
}

TEST(topk_codec, input_that_fools_the_threshold_sample_still_selects_exactly) {
  // The encoder estimates the cut from every (n / 16384)-th value. Here exactly those are large,
  // so the estimated cut passes fewer than k values and the full selection must take over.
  const std::size_t n = 131072;
  std::vector<float> x = codec_test::make_input(distribution::normal, n);
  for (std::size_t i = 0; i < n; ++i)
    x[i] = i % 8 == 0 ? 10.0f + static_cast<float>(i) * 1e-4f : x[i] * 1e-3f;
  topk_codec codec(with_fraction(0.1));
  const std::size_t k = codec.kept_count(n);
  std::vector<float> y(n);
  codec.decode(codec.encode(x), y);
  const std::vector<bool> kept = largest_indices(x, k);
  std::size_t nonzero = 0;
  for (std::size_t i = 0; i < n; ++i) {
    ASSERT_EQ(y[i], kept[i] ? x[i] : 0.0f) << i;
    nonzero += y[i] != 0.0f ? 1 : 0;
  }
  EXPECT_EQ(nonzero, k);
}

TEST(topk_codec, keeps_no_state_between_frames) {
  topk_codec codec(with_fraction(0.1));
  const std::vector<float> x(100, 1.0f);
  const auto first = codec.encode(x);
  const auto second = codec.encode(x);
  EXPECT_EQ(first, second);  // nothing of the first frame's dropped entries rides along
}

TEST(topk_codec, delta_coded_indices_take_one_or_two_bytes) {
  topk_codec codec(with_fraction(0.01));
  const std::vector<float> x = codec_test::make_input(distribution::normal, 100000);
  const std::size_t bytes = codec.encode(x).size();
  EXPECT_GE(bytes, frame_header_size + 1000 * 5);
  EXPECT_LE(bytes, frame_header_size + 1000 * 6);
  EXPECT_NEAR(static_cast<double>(bytes) / 400000.0, codec.estimated_ratio(100000), 0.002);
}

// A frame with hand-written indices: values 1, 2, 3 at the given varint bytes.
std::vector<std::byte> sparse_frame(std::uint64_t n, std::uint32_t k,
                                    std::vector<std::uint8_t> index_bytes) {
  std::vector<std::byte> frame =
    start_frame({codec_id::topk, false, n, k}, 4 * k + index_bytes.size());
  for (std::uint32_t j = 0; j < k; ++j)
    codec_test::patch(frame, frame_header_size + 4 * j, static_cast<float>(j + 1));
  for (std::size_t i = 0; i < index_bytes.size(); ++i)
    frame[frame_header_size + 4 * k + i] = static_cast<std::byte>(index_bytes[i]);
  return frame;
}

TEST(topk_codec, decodes_a_hand_written_frame) {
  std::vector<float> y(300, 9.0f);
  // Indices 0, 2 and 2 + 1 + 200 = 203.
  topk_codec().decode(sparse_frame(300, 3, {0, 1, 0xc8, 0x01}), y);
  EXPECT_EQ(y[0], 1.0f);
  EXPECT_EQ(y[2], 2.0f);
  EXPECT_EQ(y[203], 3.0f);
  EXPECT_EQ(std::count(y.begin(), y.end(), 0.0f), 297);
}

TEST(topk_codec, refuses_hostile_sparse_payloads) {
  const topk_codec codec;
  struct hostile { std::uint64_t n; std::uint32_t k; std::vector<std::uint8_t> indices; };
  for (const hostile& h : {hostile{10, 2, {0, 9}},                  // second index 10 >= n
                           hostile{10, 1, {10}},                    // index == n
                           hostile{10, 11, std::vector<std::uint8_t>(11, 0)}, // k > n
                           hostile{10, 0, {}},                      // n > 0 but nothing kept
                           hostile{10, 1, {0x80, 0x80, 0x80, 0x80, 0x80, 0x00}}, // 6-byte varint
                           hostile{10, 1, {0xff, 0xff, 0xff, 0xff, 0x1f}}, // gap > 2^32
                           hostile{10, 2, {0, 0x80, 0, 0}},         // trailing byte
                           hostile{10, 2, {0, 0x80, 0x80}},         // ends inside a varint
                           hostile{1u << 20, 2, {0xff, 0xff, 0xff, 0x7f, 0}}}) { // huge gap
    std::vector<float> y(h.n, 7.0f);
    EXPECT_THROW(codec.decode(sparse_frame(h.n, h.k, h.indices), y), codec_error) << h.k;
    for (const float v : y) {
      ASSERT_TRUE(v == 0.0f || v == 7.0f); // untouched or zero-filled, nothing half-decoded
    }
  }
}

TEST(topk_codec, refuses_non_finite_values_in_the_frame) {
  const topk_codec codec;
  for (const std::uint32_t bad : {0x7fc00000u, 0xff800000u, 0x7f800001u}) {
    std::vector<std::byte> frame = sparse_frame(10, 2, {1, 3});
    codec_test::patch(frame, frame_header_size + 4, bad);
    std::vector<float> y(10, 7.0f);
    EXPECT_THROW(codec.decode(frame, y), codec_error);
    EXPECT_EQ(y, std::vector<float>(10, 0.0f));
  }
}

TEST(topk_codec, refuses_invalid_fractions) {
  for (const double fraction : {0.0, -0.5, 1.5, std::numeric_limits<double>::quiet_NaN()}) {
    EXPECT_THROW(topk_codec{with_fraction(fraction)}, codec_error) << fraction;
  }
}

} // namespace
} // namespace ddactor
