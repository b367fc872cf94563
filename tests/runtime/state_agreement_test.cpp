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

// The digest is BLAKE2b over 4 MiB pieces and then over their hashes (a domain string and the
// length first); the expected values come from Python's hashlib.blake2b, so every build, on any
// LibTorch or libsodium, computes what its peers compute. 17 Mi floats take the threaded path.
TEST(state_agreement, the_digest_is_a_blake2b_tree_that_other_tools_reproduce) {
  EXPECT_EQ(state_digest_of(std::vector<float>(1001, 0.5f)), UINT64_C(0xf83b4c9bd04d9c44));
  std::vector<float> large(std::size_t{17} << 20, 0.25f);
  large.back() = 1.5f;
  EXPECT_EQ(state_digest_of(large), UINT64_C(0x96b97953073e82f9));
  large[std::size_t{9} << 20] = 0.5f;  // a middle piece
  EXPECT_NE(state_digest_of(large), UINT64_C(0x96b97953073e82f9));
}

TEST(digest_history, keeps_recent_epochs_so_peers_at_different_epochs_compare) {
  digest_history h;
  EXPECT_FALSE(h.record(5, 50));
  EXPECT_FALSE(h.record(6, 60));
  EXPECT_FALSE(h.record(6, 60));  // the same report again
  EXPECT_FALSE(h.record(7, 0));   // digest not known: ignored
  EXPECT_EQ(h.at(5), 50u);
  EXPECT_EQ(h.at(6), 60u);
  EXPECT_FALSE(h.at(7));
  for (int64_t e = 7; e < 7 + static_cast<int64_t>(digest_history::max_epochs); ++e)
    EXPECT_FALSE(h.record(e, static_cast<uint64_t>(e) * 10));
  EXPECT_EQ(h.entries().size(), digest_history::max_epochs);
  EXPECT_FALSE(h.at(5)) << "the oldest epochs make room";
}

TEST(digest_history, another_state_drops_what_the_peer_reported_before) {
  digest_history changed_digest;
  changed_digest.record(3, 30);
  changed_digest.record(4, 40);
  EXPECT_TRUE(changed_digest.record(4, 41));  // a download of the same epoch
  EXPECT_FALSE(changed_digest.at(3));
  EXPECT_EQ(changed_digest.at(4), 41u);

  digest_history jumped;
  jumped.record(3, 30);
  EXPECT_TRUE(jumped.record(9, 90));  // a download of a later epoch
  EXPECT_FALSE(jumped.at(3));

  digest_history went_back;
  went_back.record(3, 30);
  EXPECT_TRUE(went_back.record(2, 20));  // a restart from an older checkpoint
  EXPECT_EQ(went_back.entries().size(), 1u);
}

} // namespace
} // namespace ddactor
