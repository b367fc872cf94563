// The gateway's reading of CAF's BASP framing: messages cut anywhere are followed to the next
// header, and the first one announcing more than the bound is reported before its payload.
#include "runtime/secure/basp_guard.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <vector>

namespace ddactor {
namespace {

std::vector<uint8_t> message(uint32_t payload, uint8_t fill = 0xab) {
  // Built at its full size at once (a resize trips GCC 12's -Warray-bounds).
  std::vector<uint8_t> bytes(basp_guard::header_bytes + payload, fill);
  std::fill_n(bytes.begin(), basp_guard::header_bytes, uint8_t{0});
  bytes[0] = 1;  // an operation
  for (int i = 0; i < 4; ++i)
    bytes[basp_guard::length_offset + i] = static_cast<uint8_t>(payload >> (24 - 8 * i));
  return bytes;
}

TEST(basp_guard, follows_messages_cut_at_every_byte) {
  std::vector<uint8_t> stream;
  for (uint32_t size : {0u, 1u, 31u, 32u, 33u, 1000u, 70000u}) {
    auto m = message(size, static_cast<uint8_t>(size));
    stream.insert(stream.end(), m.begin(), m.end());
  }
  for (std::size_t cut : {1u, 2u, 7u, 31u, 32u, 33u, 4096u, 1u << 20}) {
    basp_guard guard(70000);
    for (std::size_t at = 0; at < stream.size(); at += cut) {
      const auto n = std::min(cut, stream.size() - at);
      EXPECT_FALSE(guard.feed({stream.data() + at, n})) << "cut " << cut << " at " << at;
    }
    EXPECT_EQ(guard.messages(), 7u) << "cut " << cut;
  }
}

TEST(basp_guard, a_message_past_the_bound_is_reported_from_its_header) {
  basp_guard guard(1 << 20);
  auto fine = message(1 << 20);
  EXPECT_FALSE(guard.feed(fine));
  auto huge = message(0);
  huge[4] = huge[5] = huge[6] = huge[7] = 0xff;  // 4 GiB - 1
  // Its header alone, in two pieces, is enough.
  EXPECT_FALSE(guard.feed({huge.data(), 10}));
  auto reported = guard.feed({huge.data() + 10, huge.size() - 10});
  ASSERT_TRUE(reported);
  EXPECT_EQ(*reported, 0xffffffffu);
}

} // namespace
} // namespace ddactor
