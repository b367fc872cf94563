#include "runtime/relay_choice.hpp"

#include <gtest/gtest.h>

#include <limits>

namespace ddactor {
namespace {

using namespace std::chrono_literals;
using strings = std::vector<std::string>;

TEST(relay_choice, FastestMeasuredLinksFirstThenNearest) {
  EXPECT_EQ(rank_relay_candidates({{"slow:1", 1.25e6, 10ms},
                                   {"unmeasured:1", 0, 5ms},
                                   {"fast:1", 12.5e6, 300ms},
                                   {"medium:1", 5e6, 20ms}}),
            (strings{"fast:1", "medium:1", "slow:1", "unmeasured:1"}));
}

TEST(relay_choice, EqualLinksGoByRoundTripAndUnknownRoundTripsLast) {
  // 10% apart is noise: the same band, so the nearer one first.
  EXPECT_EQ(rank_relay_candidates({{"far:1", 10e6, 300ms},
                                   {"unknown:1", 10.5e6, 0us},
                                   {"near:1", 9.6e6, 20ms}}),
            (strings{"near:1", "far:1", "unknown:1"}));
  EXPECT_EQ(rank_relay_candidates({{"b:1", 0, 0us}, {"a:1", 0, 0us}}), (strings{"b:1", "a:1"}));
}

TEST(relay_choice, AbsurdRatesCountAsUnknown) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  EXPECT_EQ(rank_relay_candidates({{"nan:1", nan, 10ms},
                                   {"inf:1", inf, 10ms},
                                   {"negative:1", -5, 10ms},
                                   {"real:1", 1e6, 50ms}}),
            (strings{"real:1", "nan:1", "inf:1", "negative:1"}));
}

TEST(relay_choice, NothingToRank) { EXPECT_TRUE(rank_relay_candidates({}).empty()); }

} // namespace
} // namespace ddactor
