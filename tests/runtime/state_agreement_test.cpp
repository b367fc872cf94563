#include "runtime/state_agreement.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

namespace ddactor {
namespace {

std::string id(char c) { return std::string(32, c); }

TEST(state_agreement, the_digest_most_peers_hold_wins) {
  std::vector<state_digest_report> reports{{id('a'), 7}, {id('b'), 9}, {id('c'), 9}};
  auto agreed = agreed_state(reports);
  ASSERT_TRUE(agreed);
  EXPECT_EQ(agreed->digest, 9u);
  EXPECT_EQ(agreed->holders, (std::vector<std::string>{id('b'), id('c')}));
}

TEST(state_agreement, a_tie_goes_to_the_digest_of_the_lowest_peer_id) {
  std::vector<state_digest_report> reports{{id('d'), 5}, {id('b'), 3}, {id('a'), 5}, {id('c'), 3}};
  auto agreed = agreed_state(reports);
  ASSERT_TRUE(agreed);
  EXPECT_EQ(agreed->digest, 5u);
  EXPECT_EQ(agreed->holders, (std::vector<std::string>{id('a'), id('d')}));
}

TEST(state_agreement, every_order_of_the_same_reports_agrees) {
  std::vector<state_digest_report> reports{{id('c'), 2}, {id('a'), 1}, {id('b'), 2}, {id('d'), 1}};
  auto first = agreed_state(reports);
  std::reverse(reports.begin(), reports.end());
  auto second = agreed_state(reports);
  ASSERT_TRUE(first && second);
  EXPECT_EQ(first->digest, 1u);
  EXPECT_EQ(first->digest, second->digest);
  EXPECT_EQ(first->holders, second->holders);
}

TEST(state_agreement, unknown_digests_do_not_count) {
  std::vector<state_digest_report> reports{{id('a'), 0}, {id('b'), 0}, {id('c'), 4}};
  auto agreed = agreed_state(reports);
  ASSERT_TRUE(agreed);
  EXPECT_EQ(agreed->digest, 4u);
  EXPECT_EQ(agreed->holders, std::vector<std::string>{id('c')});
  std::vector<state_digest_report> none{{id('a'), 0}};
  EXPECT_FALSE(agreed_state(none));
  EXPECT_FALSE(agreed_state({}));
}

TEST(state_agreement, repair_needs_a_lossless_state_served_every_epoch) {
  EXPECT_TRUE(split_repair_possible("none", 1));
  EXPECT_TRUE(split_repair_possible("zstd", 1));
  EXPECT_FALSE(split_repair_possible("fp16", 1));
  EXPECT_FALSE(split_repair_possible("bf16", 1));
  EXPECT_FALSE(split_repair_possible("none", 2));
}

TEST(state_agreement, the_digest_sees_every_bit_of_the_weights) {
  std::vector<float> weights(1001, 0.5f);
  auto base = state_digest_of(weights);
  EXPECT_NE(base, 0u);
  EXPECT_EQ(base, state_digest_of(weights));
  weights[1000] = std::nextafter(0.5f, 1.0f);
  EXPECT_NE(base, state_digest_of(weights));
  std::vector<float> empty;
  EXPECT_NE(state_digest_of(empty), 0u);
}

} // namespace
} // namespace ddactor
