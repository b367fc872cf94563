// make_codec and decode_any, and the hostile-input guarantees every codec shares: every truncation
// of a valid frame, a huge declared element count, frames of another codec, a mismatched output
// size, and unknown codec ids all throw codec_error; decoding is deterministic.
#include "runtime/compression/codec_factory.hpp"

#include "runtime/compression/codec_frame.hpp"

#include "codec_test_inputs.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <tuple>

namespace ddactor {
namespace {

using codec_test::distribution;

const std::vector<std::string> all_codecs = {"none", "fp16", "bf16", "int8", "topk"};

codec_options small_chunk_options(int zstd_level) {
  codec_options options;
  options.int8_block_size = 64;
  options.topk_fraction = 0.1;
  options.zstd_level = zstd_level;
  options.adaptive_exact_below = 100;
  return options;
}

TEST(codec_factory, builds_every_codec_by_name) {
  const std::vector<codec_id> ids = {codec_id::none, codec_id::fp16, codec_id::bf16,
                                     codec_id::int8_blockwise, codec_id::topk};
  for (std::size_t i = 0; i < all_codecs.size(); ++i) {
    const auto codec = make_codec(all_codecs[i], codec_options{});
    EXPECT_EQ(codec->id(), ids[i]);
    EXPECT_EQ(codec->name(), all_codecs[i]);
    EXPECT_EQ(codec_name(ids[i]), all_codecs[i]);
  }
}

TEST(codec_factory, refuses_unknown_names_and_invalid_options) {
  EXPECT_THROW(make_codec("int4", codec_options{}), codec_error);
  EXPECT_THROW(make_codec("", codec_options{}), codec_error);
  // "adaptive" is a chunk policy (runtime/allreduce/chunk_policy.hpp), not a codec.
  EXPECT_THROW(make_codec("adaptive", codec_options{}), codec_error);
  codec_options options;
  options.zstd_level = -1;
  EXPECT_THROW(make_codec("none", options), codec_error);
  options.zstd_level = 1000;
  EXPECT_THROW(make_codec("fp16", options), codec_error);
}

class codec_frames : public testing::TestWithParam<std::tuple<std::string, int>> {
 protected:
  std::unique_ptr<tensor_codec> codec_ =
    make_codec(std::get<0>(GetParam()), small_chunk_options(std::get<1>(GetParam())));
  std::vector<float> input_ = codec_test::make_input(distribution::normal, 300);
};

TEST_P(codec_frames, decode_any_matches_the_codecs_own_decode_and_is_deterministic) {
  const std::vector<std::byte> frame = codec_->encode(input_);
  std::vector<float> own(input_.size());
  codec_->decode(frame, own);
  std::vector<float> any(input_.size());
  decode_any(frame, any);
  EXPECT_TRUE(codec_test::bit_identical(own, any));
  decode_any(frame, any);
  EXPECT_TRUE(codec_test::bit_identical(own, any));
  // A stateless codec encodes the same input to the same bytes.
  if (codec_->id() != codec_id::topk) {
    EXPECT_EQ(codec_->encode(input_), frame);
  }
}

TEST_P(codec_frames, every_truncation_throws) {
  const std::vector<std::byte> frame = codec_->encode(input_);
  std::vector<float> out(input_.size());
  for (std::size_t length = 0; length < frame.size(); ++length) {
    EXPECT_THROW(decode_any(std::span(frame).first(length), out), codec_error) << length;
    EXPECT_THROW(codec_->decode(std::span(frame).first(length), out), codec_error) << length;
  }
  // And one byte too many.
  std::vector<std::byte> longer = frame;
  longer.push_back(std::byte{0});
  EXPECT_THROW(decode_any(longer, out), codec_error);
}

TEST_P(codec_frames, a_huge_declared_element_count_throws_before_any_allocation) {
  std::vector<std::byte> frame = codec_->encode(input_);
  for (const std::uint64_t count : {std::uint64_t{301}, std::uint64_t{0xffffffffu},
                                    std::uint64_t{1} << 40, ~std::uint64_t{0}}) {
    codec_test::patch(frame, 8, count);
    std::vector<float> out(input_.size());
    EXPECT_THROW(decode_any(frame, out), codec_error) << count;
  }
}

TEST_P(codec_frames, a_mismatched_output_size_throws_and_leaves_the_output_alone) {
  const std::vector<std::byte> frame = codec_->encode(input_);
  for (const std::size_t size : {std::size_t{0}, input_.size() - 1, input_.size() + 1}) {
    std::vector<float> out(size, 5.0f);
    EXPECT_THROW(decode_any(frame, out), codec_error) << size;
    EXPECT_THROW(codec_->decode(frame, out), codec_error) << size;
    EXPECT_EQ(out, std::vector<float>(size, 5.0f));
  }
}

TEST_P(codec_frames, frames_of_another_codec_are_refused) {
  std::vector<float> out(input_.size());
  for (const std::string& other : all_codecs) {
    if (other == codec_->name())
      continue;
    const std::vector<std::byte> frame = make_codec(other, codec_options{})->encode(input_);
    EXPECT_THROW(codec_->decode(frame, out), codec_error) << other;
  }
  std::vector<std::byte> frame = codec_->encode(input_);
  for (const std::uint8_t id : {5, 6, 255}) {
    frame[3] = static_cast<std::byte>(id);
    EXPECT_THROW(decode_any(frame, out), codec_error) << int(id);
  }
}

TEST_P(codec_frames, random_payload_bytes_never_decode_to_non_finite_values) {
  const std::vector<std::byte> frame = codec_->encode(input_);
  std::mt19937 rng(11);
  std::vector<float> out(input_.size());
  for (int trial = 0; trial < 300; ++trial) {
    std::vector<std::byte> broken = frame;
    for (int flips = 0; flips < 4; ++flips) {
      const std::size_t at = frame_header_size + rng() % (frame.size() - frame_header_size);
      broken[at] = static_cast<std::byte>(rng());
    }
    // Both outcomes are legitimate (a flipped mantissa bit is still a valid value); what must
    // hold is that nothing non-finite ever reaches the output.
    try {
      decode_any(broken, out);
    } catch (const codec_error&) {
    }
    for (const float v : out) {
      ASSERT_TRUE(std::isfinite(v));
    }
  }
}

INSTANTIATE_TEST_SUITE_P(all, codec_frames,
                         testing::Combine(testing::ValuesIn(all_codecs), testing::Values(0, 3)),
                         [](const auto& info) {
                           return std::get<0>(info.param) + "_zstd" +
                                  std::to_string(std::get<1>(info.param));
                         });

TEST(codec_factory, zstd_on_and_off_decode_to_the_same_values) {
  std::vector<float> x(20000);
  for (std::size_t i = 0; i < x.size(); ++i)
    x[i] = static_cast<float>(i % 100) * 0.25f; // compressible in every codec
  for (const std::string& name : all_codecs) {
    const auto plain = make_codec(name, small_chunk_options(0));
    const auto compressed = make_codec(name, small_chunk_options(3));
    const std::vector<std::byte> plain_frame = plain->encode(x);
    const std::vector<std::byte> compressed_frame = compressed->encode(x);
    EXPECT_LT(compressed_frame.size(), plain_frame.size()) << name;
    EXPECT_TRUE(read_frame_header(compressed_frame).zstd) << name;
    std::vector<float> a(x.size());
    std::vector<float> b(x.size());
    decode_any(plain_frame, a);
    decode_any(compressed_frame, b);
    EXPECT_TRUE(codec_test::bit_identical(a, b)) << name;
  }
}

TEST(codec_factory, estimated_ratio_matches_the_encoded_size) {
  const std::vector<float> x = codec_test::make_input(distribution::normal, 100000);
  for (const std::string& name : all_codecs) {
    const auto codec = make_codec(name, codec_options{});
    const double actual = static_cast<double>(codec->encode(x).size()) / (4.0 * x.size());
    EXPECT_NEAR(codec->estimated_ratio(x.size()), actual, 0.003) << name;
  }
}

} // namespace
} // namespace ddactor
