// Token buckets per sender: a burst passes, then the rate; senders are independent; a flood of
// new senders stays within max_senders.
#include "runtime/sender_rate_limit.hpp"

#include <gtest/gtest.h>

namespace ddactor {
namespace {

using namespace std::chrono_literals;

TEST(sender_rate_limit, a_burst_passes_then_the_rate) {
  sender_rate_limit limit(10, 5);
  const auto t0 = sender_rate_limit::clock::now();
  int passed = 0;
  for (int i = 0; i < 100; ++i)
    passed += limit.allow("node-a", t0) ? 1 : 0;
  EXPECT_EQ(passed, 5);
  EXPECT_TRUE(limit.allow("node-b", t0));  // another sender has its own bucket
  passed = 0;
  for (int ms = 1; ms <= 1000; ++ms)  // a message every millisecond for one second
    passed += limit.allow("node-a", t0 + std::chrono::milliseconds(ms)) ? 1 : 0;
  EXPECT_GE(passed, 9);
  EXPECT_LE(passed, 11);
  // Silence refills up to the burst, not beyond.
  passed = 0;
  for (int i = 0; i < 100; ++i)
    passed += limit.allow("node-a", t0 + 100s) ? 1 : 0;
  EXPECT_EQ(passed, 5);
}

TEST(sender_rate_limit, many_senders_cost_bounded_memory) {
  sender_rate_limit limit(1, 1, 64);
  const auto t0 = sender_rate_limit::clock::now();
  for (int i = 0; i < 10000; ++i)
    EXPECT_TRUE(limit.allow("node-" + std::to_string(i), t0 + std::chrono::milliseconds(i)));
  EXPECT_EQ(limit.senders(), 64u);
}

} // namespace
} // namespace ddactor
