#include "runtime/allreduce/round_deadline.hpp"

#include <gtest/gtest.h>

#include <limits>
#include <vector>

namespace ddactor {
namespace {

using namespace std::chrono_literals;

TEST(round_deadline, FollowsTheBandwidthBoundOfSlowLinks) {
  // 100 M values among 4 equal members at 1.25 MB/s (10 Mbit/s): each moves L + 2 L/4 = 150 M
  // values, 600 MB, in 480 s; three times that and 2 s of round trips.
  const std::vector<uint64_t> shares(4, 1);
  const std::vector<double> rates(4, 1.25e6);
  EXPECT_EQ(round_deadline(100'000'000, shares, rates, 120s), 1442s);
}

TEST(round_deadline, NeverBelowTheConfiguredTimeoutNorAboveItsStretch) {
  const std::vector<uint64_t> shares(4, 1);
  const std::vector<double> fast(4, 1e9);
  EXPECT_EQ(round_deadline(1000, shares, fast, 60s), 60s);
  const std::vector<double> crawling(4, 1.0);
  EXPECT_EQ(round_deadline(100'000'000, shares, crawling, 60s), 60s * max_round_deadline_stretch);
}

TEST(round_deadline, UnknownRatesCountAsTheSlowestKnownAndNoneKnownKeepsTheFloor) {
  const std::vector<uint64_t> shares(2, 1);
  const double nan = std::numeric_limits<double>::quiet_NaN();
  // 2 members: each moves L values; L = 10 M values = 40 MB at 1 MB/s: 40 s, x3 + 2 = 122 s.
  EXPECT_EQ(round_deadline(10'000'000, shares, std::vector<double>{1e6, 0.0}, 10s), 122s);
  EXPECT_EQ(round_deadline(10'000'000, shares, std::vector<double>{nan, 1e6}, 10s), 122s);
  EXPECT_EQ(round_deadline(10'000'000, shares, std::vector<double>{0.0, nan}, 10s), 10s);
  EXPECT_EQ(round_deadline(10'000'000, shares, std::vector<double>{1e6}, 10s), 10s);  // mismatch
}

TEST(round_deadline, MembersClampWhatTheLeaderAsks) {
  EXPECT_EQ(accepted_round_deadline(0ms, 60s), 60s);
  EXPECT_EQ(accepted_round_deadline(1ms, 60s), 60s);
  EXPECT_EQ(accepted_round_deadline(300s, 60s), 300s);
  EXPECT_EQ(accepted_round_deadline(std::chrono::milliseconds::max(), 60s),
            60s * max_round_deadline_stretch);
}

} // namespace
} // namespace ddactor
