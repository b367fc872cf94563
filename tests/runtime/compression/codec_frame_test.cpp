// Frame headers: the layout written by start_frame, and every way read_frame_header and
// open_frame_payload refuse a malformed, oversized or lying frame.
#include "runtime/compression/codec_frame.hpp"

#include "runtime/compression/zstd_stage.hpp"

#include "codec_test_inputs.hpp"

#include <gtest/gtest.h>

namespace ddactor {
namespace {

std::vector<std::byte> sample_frame() {
  return start_frame({codec_id::int8_blockwise, false, 0x0a0b0c0dull, 256}, 3);
}

TEST(codec_frame, header_layout_is_little_endian_and_fixed) {
  const std::vector<std::byte> frame = sample_frame();
  ASSERT_EQ(frame.size(), frame_header_size + 3);
  const std::vector<std::uint8_t> expected = {'D', 'C', 1, 3, 0, 0, 0, 0, 0x0d, 0x0c, 0x0b, 0x0a,
                                              0, 0, 0, 0, 0x00, 0x01, 0, 0};
  for (std::size_t i = 0; i < expected.size(); ++i)
    EXPECT_EQ(std::to_integer<std::uint8_t>(frame[i]), expected[i]) << i;
  const frame_header header = read_frame_header(frame);
  EXPECT_EQ(header.codec, codec_id::int8_blockwise);
  EXPECT_FALSE(header.zstd);
  EXPECT_EQ(header.element_count, 0x0a0b0c0dull);
  EXPECT_EQ(header.parameter, 256u);
}

TEST(codec_frame, refuses_malformed_headers) {
  struct corruption { std::size_t offset; std::uint8_t value; };
  for (const corruption c : {corruption{0, 'X'}, corruption{1, 'c'}, corruption{2, 0},
                             corruption{2, 2}, corruption{3, 5}, corruption{3, 200},
                             corruption{4, 2}, corruption{4, 0x81}, corruption{5, 1},
                             corruption{7, 1}}) {
    std::vector<std::byte> frame = sample_frame();
    frame[c.offset] = static_cast<std::byte>(c.value);
    EXPECT_THROW(read_frame_header(frame), codec_error) << c.offset << "=" << int(c.value);
  }
  const std::vector<std::byte> frame = sample_frame();
  for (std::size_t length = 0; length < frame_header_size; ++length) {
    EXPECT_THROW(read_frame_header(std::span(frame).first(length)), codec_error) << length;
  }
}

TEST(codec_frame, refuses_element_counts_beyond_a_frame) {
  std::vector<std::byte> frame = sample_frame();
  codec_test::patch<std::uint64_t>(frame, 8, max_frame_elements + 1);
  EXPECT_THROW(read_frame_header(frame), codec_error);
  codec_test::patch<std::uint64_t>(frame, 8, ~0ull);
  EXPECT_THROW(read_frame_header(frame), codec_error);
  EXPECT_THROW(start_frame({codec_id::none, false, max_frame_elements + 1, 0}, 0), codec_error);
}

TEST(codec_frame, element_count_must_match_the_output) {
  const frame_header header{codec_id::none, false, 10, 0};
  EXPECT_NO_THROW(check_element_count(header, 10));
  EXPECT_THROW(check_element_count(header, 9), codec_error);
  EXPECT_THROW(check_element_count(header, 11), codec_error);
}

TEST(codec_frame, payload_size_must_lie_in_the_expected_range) {
  std::vector<std::byte> storage;
  const std::vector<std::byte> frame = start_frame({codec_id::none, false, 2, 0}, 8);
  const frame_header header = read_frame_header(frame);
  EXPECT_EQ(open_frame_payload(header, frame, 8, 8, storage).size(), 8u);
  EXPECT_THROW(open_frame_payload(header, frame, 9, 9, storage), codec_error);
  EXPECT_THROW(open_frame_payload(header, frame, 4, 7, storage), codec_error);
}

TEST(codec_frame, sealing_compresses_only_when_it_helps) {
  std::vector<std::byte> zeros = start_frame({codec_id::none, false, 1000, 0}, 4000);
  seal_frame(zeros, 1);
  EXPECT_LT(zeros.size(), 200u);
  const frame_header header = read_frame_header(zeros);
  EXPECT_TRUE(header.zstd);
  std::vector<std::byte> storage;
  const std::span<const std::byte> payload = open_frame_payload(header, zeros, 4000, 4000, storage);
  EXPECT_EQ(payload.size(), 4000u);
  EXPECT_EQ(std::count(payload.begin(), payload.end(), std::byte{0}), 4000);

  std::vector<std::byte> random = start_frame({codec_id::none, false, 16, 0}, 64);
  std::mt19937 rng(1);
  for (std::size_t i = frame_header_size; i < random.size(); ++i)
    random[i] = static_cast<std::byte>(rng());
  const std::vector<std::byte> before = random;
  seal_frame(random, 19);
  EXPECT_EQ(random, before); // incompressible: left raw, flag clear
}

TEST(codec_frame, a_zstd_payload_larger_than_declared_is_refused) {
  // A decompression bomb: 1 MB of zeros compress to a few bytes, in a frame that declares 10
  // elements. The bound comes from the declared count, so zstd stops at 40 bytes.
  const std::vector<std::byte> zeros(1 << 20, std::byte{0});
  const std::vector<std::byte> bomb = zstd_compress(zeros, 1);
  std::vector<std::byte> frame = start_frame({codec_id::none, false, 10, 0}, bomb.size());
  std::copy(bomb.begin(), bomb.end(), frame.begin() + frame_header_size);
  frame[4] = std::byte{frame_flag_zstd};
  std::vector<std::byte> storage;
  EXPECT_THROW(open_frame_payload(read_frame_header(frame), frame, 40, 40, storage), codec_error);
  EXPECT_LE(storage.capacity(), 40u);
}

TEST(codec_frame, corrupt_or_missing_zstd_payloads_are_refused) {
  std::vector<std::byte> storage;
  std::vector<std::byte> empty = start_frame({codec_id::none, false, 0, 0}, 0);
  empty[4] = std::byte{frame_flag_zstd};
  EXPECT_THROW(open_frame_payload(read_frame_header(empty), empty, 0, 0, storage), codec_error);

  std::vector<std::byte> frame = start_frame({codec_id::none, false, 1000, 0}, 4000);
  seal_frame(frame, 3);
  for (std::size_t i = frame_header_size; i < frame.size(); i += 3) {
    std::vector<std::byte> broken = frame;
    broken[i] ^= std::byte{0x5a};
    try {
      const auto payload =
        open_frame_payload(read_frame_header(broken), broken, 4000, 4000, storage);
      EXPECT_EQ(payload.size(), 4000u); // zstd may accept some flips in literals; size still holds
    } catch (const codec_error&) {
    }
  }
}

TEST(zstd_stage, round_trips_and_bounds_the_output) {
  std::vector<std::byte> data(5000);
  for (std::size_t i = 0; i < data.size(); ++i)
    data[i] = static_cast<std::byte>(i % 7);
  const std::vector<std::byte> compressed = zstd_compress(data, 3);
  EXPECT_LT(compressed.size(), data.size() / 10);
  std::vector<std::byte> output(data.size());
  EXPECT_EQ(zstd_decompress(compressed, output), data.size());
  EXPECT_EQ(output, data);
  std::vector<std::byte> small(data.size() - 1);
  EXPECT_THROW(zstd_decompress(compressed, small), codec_error);
  EXPECT_THROW(zstd_decompress(std::span(compressed).first(compressed.size() - 1), output),
               codec_error);
}

} // namespace
} // namespace ddactor
