// Misbehaviour scores: offences add up, fade, and ban for the ban time.
#include "runtime/secure/misbehaviour_scores.hpp"

#include <gtest/gtest.h>

namespace ddactor {
namespace {

using std::chrono::seconds;

TEST(misbehaviour_scores, proof_bans_at_once_and_the_ban_ends_after_the_ban_time) {
  misbehaviour_scores scores(seconds(600));
  const auto t0 = misbehaviour_scores::clock_type::time_point{} + seconds(1000);
  EXPECT_TRUE(scores.add("liar", misbehaviour_scores::threshold, t0));
  EXPECT_TRUE(scores.banned("liar", t0 + seconds(599)));
  EXPECT_FALSE(scores.banned("liar", t0 + seconds(600)));
  EXPECT_FALSE(scores.banned("honest", t0));
  EXPECT_EQ(scores.banned_count(t0 + seconds(1)), 1u);
  // A second offence while banned neither extends the ban nor counts as a new one.
  EXPECT_FALSE(scores.add("liar", misbehaviour_scores::threshold, t0 + seconds(10)));
  EXPECT_EQ(scores.banned_until("liar"), t0 + seconds(600));
  // After the ban the score starts from zero.
  EXPECT_EQ(scores.score("liar", t0 + seconds(600)), 0.0);
}

TEST(misbehaviour_scores, lapses_ban_only_when_they_pile_up_faster_than_they_fade) {
  misbehaviour_scores scores(seconds(100));  // fades 10 points per 100 s
  const auto t0 = misbehaviour_scores::clock_type::time_point{} + seconds(1000);
  EXPECT_FALSE(scores.add("slow", 3, t0));
  EXPECT_FALSE(scores.add("slow", 3, t0 + seconds(50)));  // 3 - 5 -> 0, + 3
  EXPECT_NEAR(scores.score("slow", t0 + seconds(50)), 3.0, 1e-9);
  EXPECT_FALSE(scores.add("slow", 3, t0 + seconds(100)));
  EXPECT_FALSE(scores.banned("slow", t0 + seconds(100)));
  EXPECT_FALSE(scores.add("fast", 3, t0));
  EXPECT_FALSE(scores.add("fast", 3, t0 + seconds(1)));
  EXPECT_FALSE(scores.add("fast", 3, t0 + seconds(2)));
  EXPECT_TRUE(scores.add("fast", 3, t0 + seconds(3)));
  EXPECT_TRUE(scores.banned("fast", t0 + seconds(3)));
}

TEST(misbehaviour_scores, negative_points_do_not_pay_off_offences) {
  misbehaviour_scores scores(seconds(600));
  const auto t0 = misbehaviour_scores::clock_type::time_point{} + seconds(1);
  scores.add("peer", 9, t0);
  scores.add("peer", -100, t0);
  EXPECT_TRUE(scores.add("peer", 1, t0));
}

} // namespace
} // namespace ddactor
