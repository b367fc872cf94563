// Tests of tensor_blob: the checksum catches every single-bit flip, pinned checksum values (a change
// would break peers running the previous build), sealing and validation of every kind of bad blob,
// and the little-endian float32 payload.
#include "runtime/tensor_blob.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <set>
#include <string>
#include <vector>

namespace ddactor {
namespace {

std::vector<char> random_bytes(std::size_t size, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<char> bytes(size);
  for (auto& b : bytes)
    b = static_cast<char>(rng());
  return bytes;
}

std::uint64_t checksum_of(const std::string& s, std::uint64_t seed = 0) {
  return blob_checksum(std::span<const char>(s.data(), s.size()), seed);
}

TEST(blob_checksum, detects_every_single_bit_flip) {
  // Sizes around the 8-byte word and the 32-byte block, so that every path (blocks, full words in
  // the tail, the zero-padded last word) is covered.
  for (std::size_t size = 1; size <= 80; ++size) {
    std::vector<char> bytes = random_bytes(size, size);
    const std::uint64_t original = blob_checksum(bytes);
    for (std::size_t bit = 0; bit < size * 8; ++bit) {
      bytes[bit / 8] ^= static_cast<char>(1 << (bit % 8));
      EXPECT_NE(blob_checksum(bytes), original) << "size " << size << " bit " << bit;
      bytes[bit / 8] ^= static_cast<char>(1 << (bit % 8));
    }
    EXPECT_EQ(blob_checksum(bytes), original);
  }
}

TEST(blob_checksum, detects_any_corruption_of_one_word) {
  std::mt19937_64 rng(5);
  std::vector<char> bytes = random_bytes(4096, 11);
  const std::uint64_t original = blob_checksum(bytes);
  for (int trial = 0; trial < 2000; ++trial) {
    const std::size_t word = rng() % (bytes.size() / 8);
    std::uint64_t noise = rng() | 1; // nonzero
    std::vector<char> corrupted = bytes;
    for (int k = 0; k < 8; ++k)
      corrupted[word * 8 + k] ^= static_cast<char>((noise >> (8 * k)) & 0xff);
    EXPECT_NE(blob_checksum(corrupted), original) << "word " << word;
  }
}

TEST(blob_checksum, distinguishes_lengths_contents_and_seeds) {
  std::set<std::uint64_t> seen;
  // All-zero buffers differ only in length.
  for (std::size_t size = 0; size <= 200; ++size)
    EXPECT_TRUE(seen.insert(blob_checksum(std::vector<char>(size, 0))).second) << size;
  for (std::uint64_t seed = 0; seed < 20000; ++seed)
    EXPECT_TRUE(seen.insert(blob_checksum(random_bytes(8 + seed % 64, seed))).second) << seed;
  EXPECT_NE(checksum_of("abc"), checksum_of(std::string("abc\0", 4)));
  EXPECT_NE(checksum_of("ddactor", 0), checksum_of("ddactor", 1));
  // Swapping two words in different lanes changes the result.
  std::vector<char> bytes = random_bytes(64, 3);
  const std::uint64_t original = blob_checksum(bytes);
  std::swap_ranges(bytes.begin(), bytes.begin() + 8, bytes.begin() + 8);
  EXPECT_NE(blob_checksum(bytes), original);
}

TEST(blob_checksum, values_are_pinned) {
  // The checksum is part of the wire format: peers on different builds must agree.
  EXPECT_EQ(checksum_of(""), 0xaf13a171643e97a1ULL);
  EXPECT_EQ(checksum_of("ddactor"), 0x0dcb3ca3a4c0ea2aULL);
  EXPECT_EQ(checksum_of(std::string(100, 'x')), 0xe31672e1c3e372cdULL);
  EXPECT_EQ(checksum_of("ddactor", 42), 0xa54da0c899d87a93ULL);
  const std::vector<float> v = {1.0f, -2.5f};
  EXPECT_EQ(make_float32_blob(7, 3, 100, v).checksum, 0x601479803df41ab2ULL);
  // Past the 16 KB blocks in which the checksum is computed beside a copy (values from an
  // independent reimplementation of the hash).
  auto pattern = [](std::size_t size) {
    std::string s(size, '\0');
    for (std::size_t i = 0; i < size; ++i)
      s[i] = static_cast<char>((i * 131 + 7) & 0xff);
    return s;
  };
  EXPECT_EQ(checksum_of(pattern(16384 + 40)), 0xe35b661388f27761ULL);
  EXPECT_EQ(checksum_of(pattern(50003)), 0x9a4b45dc57fc169cULL);
  std::vector<float> many(4100);
  for (std::size_t i = 0; i < many.size(); ++i)
    many[i] = static_cast<float>(i % 97) * 0.25f - 7.0f;
  EXPECT_EQ(make_float32_blob(7, 3, 100, many).checksum, 0x67222323177a8848ULL);
}

tensor_blob sample_blob(std::size_t elements = 16) {
  std::vector<float> values(elements);
  for (std::size_t i = 0; i < elements; ++i)
    values[i] = static_cast<float>(i) * 0.5f - 3.0f;
  return make_float32_blob(9, 2, 32, values);
}

blob_expectations matching_expectations() {
  blob_expectations e;
  e.round_id = 9;
  e.part_index = 2;
  e.dtype = static_cast<std::uint8_t>(blob_dtype::float32);
  e.codec = blob_codec_none;
  e.part_length = 48;
  return e;
}

// The reason validate_blob gives, or "" when it accepts.
std::string refusal(const tensor_blob& blob, const blob_expectations& e = matching_expectations()) {
  return validate_blob(blob, e).value_or("");
}

bool mentions(const std::string& reason, const std::string& word) {
  return reason.find(word) != std::string::npos;
}

TEST(validate_blob, accepts_a_sealed_blob) {
  EXPECT_EQ(refusal(sample_blob()), "");
  EXPECT_EQ(refusal(sample_blob(), blob_expectations{}), "");
  EXPECT_EQ(refusal(sample_blob(0)), "");
  const tensor_blob last = sample_blob(16); // [32, 48): exactly up to the end of the part
  EXPECT_EQ(refusal(last), "");
}

TEST(validate_blob, every_bit_flip_of_the_payload_is_a_checksum_mismatch) {
  tensor_blob blob = sample_blob(4);
  for (std::size_t bit = 0; bit < blob.bytes.size() * 8; ++bit) {
    blob.bytes[bit / 8] ^= static_cast<char>(1 << (bit % 8));
    EXPECT_TRUE(mentions(refusal(blob), "checksum mismatch")) << "bit " << bit;
    blob.bytes[bit / 8] ^= static_cast<char>(1 << (bit % 8));
  }
  EXPECT_EQ(refusal(blob), "");
}

TEST(validate_blob, can_leave_the_checksum_to_a_checked_read) {
  tensor_blob blob = sample_blob();
  blob.bytes[3] ^= 0x01;
  blob_expectations e = matching_expectations();
  e.check_checksum = false;
  EXPECT_EQ(refusal(blob, e), "");
  blob.part_index = 5;
  EXPECT_TRUE(mentions(refusal(blob, e), "part 5, expected 2")) << refusal(blob, e);
}

TEST(validate_blob, corrupted_header_fields_are_caught) {
  auto expect_refused = [](auto change, const char* what) {
    tensor_blob blob = sample_blob();
    change(blob);
    EXPECT_TRUE(mentions(refusal(blob, blob_expectations{}), "checksum mismatch")) << what;
  };
  expect_refused([](tensor_blob& b) { b.round_id ^= 1; }, "round_id");
  expect_refused([](tensor_blob& b) { b.part_index ^= 4; }, "part_index");
  expect_refused([](tensor_blob& b) { b.offset ^= 1ULL << 40; }, "offset");
  expect_refused([](tensor_blob& b) { b.shape = {4, 4}; }, "shape");
  expect_refused([](tensor_blob& b) { b.codec = 7; }, "codec");
  expect_refused([](tensor_blob& b) { b.checksum ^= 1ULL << 63; }, "checksum");
  tensor_blob unsealed = sample_blob();
  unsealed.checksum = 0;
  EXPECT_TRUE(mentions(refusal(unsealed), "checksum"));
}

TEST(validate_blob, reports_each_structural_problem) {
  tensor_blob b = sample_blob();
  b.dtype = 200;
  seal(b);
  EXPECT_TRUE(mentions(refusal(b), "unknown dtype code 200")) << refusal(b);

  b = sample_blob();
  b.shape = std::vector<std::int64_t>(9, 1);
  seal(b);
  EXPECT_TRUE(mentions(refusal(b), "rank 9")) << refusal(b);

  b = sample_blob();
  b.shape = {-4, -4};
  seal(b);
  EXPECT_TRUE(mentions(refusal(b), "dimension 0 is negative")) << refusal(b);

  b = sample_blob();
  b.shape = {std::int64_t{1} << 40, std::int64_t{1} << 40}; // the product overflows 64 bits
  seal(b);
  EXPECT_TRUE(mentions(refusal(b), "maximum of")) << refusal(b);

  blob_expectations small = matching_expectations();
  small.max_elements = 8;
  EXPECT_TRUE(mentions(refusal(sample_blob(), small), "more than the maximum of 8")) << refusal(b);

  small = matching_expectations();
  small.max_bytes = 63;
  EXPECT_TRUE(mentions(refusal(sample_blob(), small), "exceeds the maximum of 63"));

  b = sample_blob();
  b.bytes.pop_back();
  seal(b);
  EXPECT_TRUE(mentions(refusal(b), "63 bytes does not match 16 elements of 4 bytes"))
      << refusal(b);

  b = sample_blob();
  b.shape = {17};
  seal(b);
  EXPECT_TRUE(mentions(refusal(b), "does not match")) << refusal(b);

  // A codec owns its byte count: only the limits apply.
  b = sample_blob();
  b.codec = 3;
  b.bytes.resize(10);
  seal(b);
  EXPECT_EQ(refusal(b, blob_expectations{}), "");
  EXPECT_TRUE(mentions(refusal(b), "codec code 3, expected 0"));
}

TEST(validate_blob, reports_each_unmet_expectation) {
  blob_expectations e = matching_expectations();
  e.round_id = 10;
  EXPECT_EQ(refusal(sample_blob(), e), "round 9, expected 10");
  e = matching_expectations();
  e.part_index = 0;
  EXPECT_EQ(refusal(sample_blob(), e), "part 2, expected 0");
  e = matching_expectations();
  e.dtype = static_cast<std::uint8_t>(blob_dtype::int8);
  EXPECT_EQ(refusal(sample_blob(), e), "dtype code 0, expected 4");
  e = matching_expectations();
  e.part_length = 47;
  EXPECT_TRUE(mentions(refusal(sample_blob(), e), "run past the part's 47 elements"));
  tensor_blob far = sample_blob();
  far.offset = std::numeric_limits<std::uint64_t>::max() - 4; // offset + numel would wrap
  seal(far);
  EXPECT_TRUE(mentions(refusal(far), "run past the part"));
}

TEST(tensor_blob, float32_payload_is_little_endian_and_round_trips) {
  const std::vector<float> values = {1.0f, -0.0f, std::numeric_limits<float>::denorm_min(),
                                     std::numeric_limits<float>::max(),
                                     std::numeric_limits<float>::infinity()};
  const tensor_blob blob = make_float32_blob(1, 0, 0, values);
  EXPECT_EQ(blob.shape, (std::vector<std::int64_t>{5}));
  EXPECT_EQ(blob.bytes.size(), 20u);
  const unsigned char one[4] = {0x00, 0x00, 0x80, 0x3f};
  EXPECT_EQ(std::memcmp(blob.bytes.data(), one, 4), 0);
  const std::vector<float> back = float32_values(blob);
  ASSERT_EQ(back.size(), values.size());
  EXPECT_EQ(std::memcmp(back.data(), values.data(), 20), 0);
  EXPECT_TRUE(float32_values(make_float32_blob(1, 0, 0, {})).empty());
}

TEST(tensor_blob, float32_values_refuses_other_contents) {
  tensor_blob b = sample_blob();
  b.dtype = static_cast<std::uint8_t>(blob_dtype::float16);
  EXPECT_THROW(float32_values(b), blob_error);
  b = sample_blob();
  b.codec = 2;
  EXPECT_THROW(float32_values(b), blob_error);
  b = sample_blob();
  b.bytes.pop_back();
  EXPECT_THROW(float32_values(b), blob_error);
  b = sample_blob();
  b.shape = {-16};
  EXPECT_THROW(float32_values(b), blob_error);
}

TEST(tensor_blob, a_checked_read_gives_the_values_and_checks_checksum_and_finiteness) {
  // Sizes below, at and past one 16 KB block (4096 floats), with tails of odd lengths.
  for (std::size_t size : {1u, 7u, 4095u, 4096u, 4097u, 8192u + 3u, 20000u}) {
    const tensor_blob blob = sample_blob(size);
    const checked_float32 read = read_checked_float32(blob);
    EXPECT_EQ(read.values, float32_values(blob)) << size;
    EXPECT_TRUE(read.checksum_matches) << size;
    EXPECT_TRUE(read.all_finite) << size;

    for (std::size_t at : {std::size_t{0}, size / 2, size - 1}) {
      tensor_blob flipped = blob;
      flipped.bytes[4 * at + 1] ^= 0x10;
      EXPECT_FALSE(read_checked_float32(flipped).checksum_matches) << size << " at " << at;

      for (float bad : {std::numeric_limits<float>::quiet_NaN(),
                        -std::numeric_limits<float>::infinity()}) {
        std::vector<float> values = float32_values(blob);
        values[at] = bad;
        const checked_float32 bad_read = read_checked_float32(make_float32_blob(9, 2, 32, values));
        EXPECT_TRUE(bad_read.checksum_matches) << size << " at " << at;
        EXPECT_FALSE(bad_read.all_finite) << size << " at " << at;
      }
    }
  }
  tensor_blob header_changed = sample_blob(100);
  header_changed.offset += 1;
  EXPECT_FALSE(read_checked_float32(header_changed).checksum_matches);
  tensor_blob coded = sample_blob();
  coded.codec = 3;
  EXPECT_THROW(read_checked_float32(coded), blob_error);
  tensor_blob short_payload = sample_blob();
  short_payload.bytes.pop_back();
  EXPECT_THROW(read_checked_float32(short_payload), blob_error);
}

TEST(tensor_blob, dtype_sizes) {
  EXPECT_EQ(dtype_size(static_cast<std::uint8_t>(blob_dtype::float32)), 4u);
  EXPECT_EQ(dtype_size(static_cast<std::uint8_t>(blob_dtype::bfloat16)), 2u);
  EXPECT_EQ(dtype_size(static_cast<std::uint8_t>(blob_dtype::int64)), 8u);
  EXPECT_EQ(dtype_size(static_cast<std::uint8_t>(blob_dtype::uint8)), 1u);
  EXPECT_FALSE(dtype_size(8).has_value());
  EXPECT_EQ(shape_elements(std::vector<std::int64_t>{}, 10), 1u);
  EXPECT_EQ(shape_elements(std::vector<std::int64_t>{0, -1}, 10), std::nullopt);
  EXPECT_EQ(shape_elements(std::vector<std::int64_t>{3, 0, 1LL << 62}, 10), 0u);
  EXPECT_EQ(shape_elements(std::vector<std::int64_t>{4, 3}, 11), std::nullopt);
  // A zero dimension empties the shape, even behind dimensions whose product passes the limit.
  EXPECT_EQ(shape_elements(std::vector<std::int64_t>{1, 0, 0, 0}, 0), 0u);
  EXPECT_EQ(shape_elements(std::vector<std::int64_t>{1LL << 62, 0}, 10), 0u);
}

// Found by the wire fuzz target: validate_blob accepted this blob, float32_values threw.
TEST(tensor_blob, an_empty_blob_of_any_shape_reads_as_no_values) {
  auto blob = make_float32_blob(1, 0, 0, std::vector<float>{});
  blob.shape = {1, 0, 0, 0};
  seal(blob);
  ASSERT_EQ(validate_blob(blob, blob_expectations{}), std::nullopt);
  EXPECT_TRUE(float32_values(blob).empty());
}

} // namespace
} // namespace ddactor
