#include "runtime/allreduce/bandwidth_shares.hpp"

#include <gtest/gtest.h>

#include <numeric>
#include <random>

namespace ddactor {
namespace {

// Mbit/s to bytes per second.
double mbit(double rate) { return rate * 1e6 / 8; }

std::vector<part_range> cut(std::size_t length, const std::vector<double>& rates) {
  return partition_by_shares(length, bandwidth_part_shares(rates));
}

TEST(bandwidth_shares, equal_rates_cut_equal_parts) {
  const auto parts = cut(1000, {mbit(100), mbit(100), mbit(100), mbit(100)});
  for (const auto& part : parts)
    EXPECT_EQ(part.size(), 250u);
}

TEST(bandwidth_shares, two_members_move_the_whole_vector_whatever_the_cut_so_it_stays_equal) {
  EXPECT_EQ(bandwidth_part_shares(std::vector<double>{mbit(10), mbit(1000)}),
            (std::vector<std::uint64_t>{1, 1}));
}

TEST(bandwidth_shares, unknown_rates_count_as_the_median_and_none_known_is_equal) {
  EXPECT_EQ(bandwidth_part_shares(std::vector<double>{0, 0, 0}),
            (std::vector<std::uint64_t>{1, 1, 1}));
  const auto shares = bandwidth_part_shares(std::vector<double>{mbit(100), 0, mbit(100)});
  EXPECT_EQ(shares[0], shares[1]);
  EXPECT_EQ(shares[1], shares[2]);
  const auto nan = std::numeric_limits<double>::quiet_NaN();
  const auto odd = bandwidth_part_shares(std::vector<double>{mbit(100), nan, -5, mbit(100)});
  EXPECT_EQ(odd, (std::vector<std::uint64_t>(4, odd[0])));
}

TEST(bandwidth_shares, one_slow_member_of_four_reduces_nothing_and_the_round_gets_faster) {
  // One at 20 Mbit/s, three at 100: the slow member must move the whole vector anyway (L / 20);
  // any part would add to that, so the three fast ones share the vector.
  const std::vector<double> rates = {mbit(100), mbit(20), mbit(100), mbit(100)};
  const auto parts = cut(3000, rates);
  EXPECT_EQ(parts[1].size(), 0u);
  EXPECT_EQ(parts[0].size(), 1000u);
  EXPECT_EQ(parts[2].size(), 1000u);
  EXPECT_EQ(parts[3].size(), 1000u);
  const auto equal = butterfly_partition(3000, 4);
  const double balanced = slowest_transfer_seconds(parts, rates, 4);
  const double even = slowest_transfer_seconds(equal, rates, 4);
  // Equal parts: the slow member moves L + 2 L / 4 = 1.5 L; balanced: L.
  EXPECT_NEAR(even / balanced, 1.5, 1e-9);
}

TEST(bandwidth_shares, members_that_cannot_accept_connections_reduce_nothing) {
  // Two behind NAT, rates unknown: the two reachable members share the vector.
  const std::vector<double> unknown(4, 0.0);
  const std::vector<bool> reachable = {true, false, true, false};
  const auto shares = bandwidth_part_shares(unknown, reachable);
  EXPECT_EQ(shares, (std::vector<std::uint64_t>{1, 0, 1, 0}));
  // With rates, the water-filling runs over the reachable members only, and a fast member
  // behind NAT still gets nothing.
  const std::vector<double> rates = {mbit(100), mbit(1000), mbit(50), mbit(100)};
  const auto cut_rates = bandwidth_part_shares(rates, {true, false, true, true});
  EXPECT_EQ(cut_rates[1], 0u);
  EXPECT_GT(cut_rates[0], cut_rates[2]);
  EXPECT_EQ(cut_rates[0], cut_rates[3]);
  // Two members, one behind NAT: the reachable one reduces the whole vector.
  EXPECT_EQ(bandwidth_part_shares(std::vector<double>(2, 0.0), {false, true}),
            (std::vector<std::uint64_t>{0, 1}));
  // Nobody reachable: every link is relayed anyway, so the parts are cut as usual.
  EXPECT_EQ(bandwidth_part_shares(unknown, std::vector<bool>(4, false)),
            std::vector<std::uint64_t>(4, 1));
}

TEST(bandwidth_shares, a_moderately_slower_member_gets_a_smaller_part_and_times_level_out) {
  const std::vector<double> rates = {mbit(100), mbit(60), mbit(100), mbit(80), mbit(100)};
  const std::size_t length = 1'000'000;
  const auto parts = cut(length, rates);
  EXPECT_LT(parts[1].size(), parts[3].size());
  EXPECT_LT(parts[3].size(), parts[0].size());
  EXPECT_GT(parts[1].size(), 0u);
  // Every member that reduces needs the same time (up to the rounding to elements).
  const double n = 5;
  std::vector<double> seconds;
  for (std::size_t i = 0; i < parts.size(); ++i)
    seconds.push_back((length + (n - 2) * parts[i].size()) / rates[i]);
  for (double s : seconds)
    EXPECT_NEAR(s / seconds[0], 1.0, 1e-4);
  EXPECT_LT(slowest_transfer_seconds(parts, rates, 4),
            slowest_transfer_seconds(butterfly_partition(length, 5), rates, 4));
}

TEST(bandwidth_shares, no_other_cut_of_random_groups_beats_it) {
  std::mt19937_64 random(7);
  std::uniform_real_distribution<double> rate(1, 1000);
  for (int trial = 0; trial < 200; ++trial) {
    const std::size_t n = 3 + trial % 6;
    std::vector<double> rates(n);
    for (auto& r : rates)
      r = mbit(rate(random));
    const std::size_t length = 100'000;
    const double best = slowest_transfer_seconds(cut(length, rates), rates, 4);
    // No random cut is better.
    for (int other = 0; other < 20; ++other) {
      std::vector<double> weights(n);
      for (auto& w : weights)
        w = rate(random);
      const auto parts = butterfly_partition(length, weights);
      EXPECT_GE(slowest_transfer_seconds(parts, rates, 4), best * (1 - 1e-3));
    }
  }
}

TEST(bandwidth_shares, survivors_of_a_restart_split_by_their_shares_or_equally) {
  EXPECT_EQ(partition_by_shares(10, std::vector<std::uint64_t>{0, 0}),
            butterfly_partition(10, 2));
  const auto parts = partition_by_shares(300, std::vector<std::uint64_t>{2, 0, 1});
  EXPECT_EQ(parts[0].size(), 200u);
  EXPECT_EQ(parts[1].size(), 0u);
  EXPECT_EQ(parts[2].size(), 100u);
  // Hostile shares still cut the whole vector.
  const auto wild = partition_by_shares(
    1000, std::vector<std::uint64_t>{~std::uint64_t{0}, 1, ~std::uint64_t{0} - 5});
  EXPECT_EQ(wild.back().end, 1000u);
}

} // namespace
} // namespace ddactor
