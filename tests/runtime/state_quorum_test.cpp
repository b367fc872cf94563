#include "runtime/state_quorum.hpp"

#include <gtest/gtest.h>

namespace ddactor {
namespace {

TEST(state_quorum, the_quorum_is_the_configured_count_or_every_other_peer) {
  EXPECT_EQ(required_vouchers(2, 0), 1u);
  EXPECT_EQ(required_vouchers(2, 1), 1u);
  EXPECT_EQ(required_vouchers(2, 5), 2u);
  EXPECT_EQ(required_vouchers(3, 2), 2u);
}

TEST(state_quorum, only_states_enough_distinct_peers_claim_are_vouched_for) {
  std::vector<state_claim> claims{{"a", 5, 11}, {"b", 5, 11}, {"b", 5, 11}, {"c", 5, 12},
                                  {"m", 999, 13}, {"a", 4, 10}, {"c", 4, 10}};
  auto vouched = vouch(claims, 2);
  EXPECT_TRUE(may_take(vouched, 5, 11));
  EXPECT_FALSE(may_take(vouched, 5, 12));   // c alone
  EXPECT_FALSE(may_take(vouched, 999, 13)); // m alone
  EXPECT_TRUE(may_take(vouched, 4, 10));
  // The second-highest of each peer's highest epoch: m's claim does not lift it.
  EXPECT_EQ(vouched.quorum_epoch, 5);
  // A peer repeating itself is one voice.
  auto alone = vouch({{"m", 9, 1}, {"m", 9, 1}, {"m", 9, 1}}, 2);
  EXPECT_FALSE(may_take(alone, 9, 1));
  EXPECT_FALSE(alone.quorum_epoch.has_value());
}

TEST(state_quorum, without_digests_an_epoch_a_quorum_reached_may_be_taken) {
  auto vouched = vouch({{"a", 7, 0}, {"b", 6, 0}, {"m", 500, 0}}, 2);
  EXPECT_EQ(vouched.quorum_epoch, 7);
  EXPECT_TRUE(may_take(vouched, 6, 0));
  EXPECT_TRUE(may_take(vouched, 7, 0));
  EXPECT_FALSE(may_take(vouched, 8, 0));
  EXPECT_FALSE(may_take(vouched, 500, 0));
}

} // namespace
} // namespace ddactor
