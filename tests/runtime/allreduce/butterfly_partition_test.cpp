// Tests of butterfly_partition and chunk_ranges: exact cover, proportionality, zero weights, tiny and
// empty vectors, alignment, determinism, and refusal of impossible arguments.
#include "runtime/allreduce/butterfly_partition.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <tuple>
#include <vector>

namespace ddactor {
namespace {

using sizes = std::vector<std::size_t>;

sizes part_sizes(const std::vector<part_range>& parts) {
  sizes result;
  for (const auto& p : parts)
    result.push_back(p.size());
  return result;
}

// Parts are contiguous, in peer order, and cover [0, length) exactly.
void expect_exact_cover(const std::vector<part_range>& parts, std::size_t length) {
  ASSERT_FALSE(parts.empty());
  EXPECT_EQ(parts.front().begin, 0u);
  EXPECT_EQ(parts.back().end, length);
  for (std::size_t i = 0; i < parts.size(); ++i) {
    EXPECT_LE(parts[i].begin, parts[i].end) << "part " << i;
    if (i > 0) {
      EXPECT_EQ(parts[i].begin, parts[i - 1].end) << "part " << i;
    }
  }
}

TEST(butterfly_partition, equal_weights_spread_the_remainder_over_the_first_peers) {
  EXPECT_EQ(part_sizes(butterfly_partition(10, 3)), (sizes{4, 3, 3}));
  EXPECT_EQ(part_sizes(butterfly_partition(11, 3)), (sizes{4, 4, 3}));
  EXPECT_EQ(part_sizes(butterfly_partition(12, 3)), (sizes{4, 4, 4}));
  const auto parts = butterfly_partition(10, 3);
  EXPECT_EQ(parts[0], (part_range{0, 4}));
  EXPECT_EQ(parts[1], (part_range{4, 7}));
  EXPECT_EQ(parts[2], (part_range{7, 10}));
}

TEST(butterfly_partition, sizes_follow_the_largest_remainder_method) {
  const std::vector<double> three_to_one = {3.0, 1.0};
  // Quotas 7.5 and 2.5: equal remainders, the tie goes to the lower index.
  EXPECT_EQ(part_sizes(butterfly_partition(10, three_to_one)), (sizes{8, 2}));
  const std::vector<double> w = {1.0, 2.0, 3.0, 4.0};
  // Quotas 1.0, 2.0, 3.0, 4.0 of 10: exact.
  EXPECT_EQ(part_sizes(butterfly_partition(10, w)), (sizes{1, 2, 3, 4}));
  // Quotas 1.1, 2.2, 3.3, 4.4 of 11: floors 1, 2, 3, 4 and one leftover to the largest remainder.
  EXPECT_EQ(part_sizes(butterfly_partition(11, w)), (sizes{1, 2, 3, 5}));
  // Quotas 0.7, 1.4, 2.1, 2.8 of 7: floors 0, 1, 2, 2; leftovers 2 to remainders .8 and .7.
  EXPECT_EQ(part_sizes(butterfly_partition(7, w)), (sizes{1, 1, 2, 3}));
}

class partition_sweep : public ::testing::TestWithParam<std::tuple<std::size_t, std::size_t>> {};

TEST_P(partition_sweep, covers_exactly_and_stays_within_one_of_the_quota) {
  const auto [n, length] = GetParam();
  std::mt19937_64 rng(n * 1000003 + length);
  std::uniform_real_distribution<double> weight(0.01, 100.0);
  std::vector<double> w(n);
  for (auto& x : w)
    x = weight(rng);
  const auto parts = butterfly_partition(length, w);
  ASSERT_EQ(parts.size(), n);
  expect_exact_cover(parts, length);
  long double total = 0;
  for (double x : w)
    total += x;
  for (std::size_t i = 0; i < n; ++i) {
    const long double quota = static_cast<long double>(length) * w[i] / total;
    // Largest remainder: floor or ceiling of the quota (slack for the long double quota itself).
    EXPECT_LT(std::fabs(static_cast<long double>(parts[i].size()) - quota), 1.0L + 1e-9L)
        << "peer " << i << " quota " << static_cast<double>(quota);
  }
  // Equal weights: every part is floor(L/n) or ceil(L/n).
  for (const auto& p : butterfly_partition(length, n)) {
    EXPECT_GE(p.size(), length / n);
    EXPECT_LE(p.size(), length / n + 1);
  }
}

INSTANTIATE_TEST_SUITE_P(groups_and_lengths, partition_sweep,
                         ::testing::Combine(::testing::Range<std::size_t>(1, 17),
                                            ::testing::Values<std::size_t>(0, 1, 7, 15, 16, 17,
                                                                           1000, 1000003)),
                         [](const auto& info) {
                           return "n" + std::to_string(std::get<0>(info.param)) + "_length" +
                                  std::to_string(std::get<1>(info.param));
                         });

TEST(butterfly_partition, zero_weight_peers_get_empty_parts) {
  const std::vector<double> w = {0.0, 1.0, 0.0, 2.0, 0.0};
  for (std::size_t length : {0u, 1u, 2u, 3u, 4u, 100u, 1001u}) {
    const auto parts = butterfly_partition(length, w);
    expect_exact_cover(parts, length);
    EXPECT_TRUE(parts[0].empty());
    EXPECT_TRUE(parts[2].empty());
    EXPECT_TRUE(parts[4].empty());
    EXPECT_EQ(parts[1].size() + parts[3].size(), length);
  }
  const std::vector<double> only_one = {0.0, 0.0, 5.0};
  EXPECT_EQ(part_sizes(butterfly_partition(9, only_one)), (sizes{0, 0, 9}));
}

TEST(butterfly_partition, shorter_vector_than_group_gives_some_peers_nothing) {
  EXPECT_EQ(part_sizes(butterfly_partition(3, 5)), (sizes{1, 1, 1, 0, 0}));
  EXPECT_EQ(part_sizes(butterfly_partition(1, 16)),
            (sizes{1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}));
}

TEST(butterfly_partition, empty_vector_gives_empty_parts) {
  const auto parts = butterfly_partition(0, 4);
  ASSERT_EQ(parts.size(), 4u);
  for (const auto& p : parts)
    EXPECT_EQ(p, (part_range{0, 0}));
}

TEST(butterfly_partition, alignment_puts_inner_boundaries_on_multiples) {
  for (std::size_t alignment : {2u, 4u, 64u, 1000u}) {
    for (std::size_t length : {0u, 1u, 103u, 4096u, 100001u}) {
      for (std::size_t n : {1u, 3u, 7u}) {
        const auto parts = butterfly_partition(length, n, alignment);
        expect_exact_cover(parts, length);
        for (const auto& p : parts)
          EXPECT_TRUE(p.begin % alignment == 0 || p.begin == length)
              << "alignment " << alignment << " length " << length << " begin " << p.begin;
      }
    }
  }
  // 103 elements in units of 4: 26 units (the last holds 3 elements), 9 + 9 + 8 units.
  EXPECT_EQ(part_sizes(butterfly_partition(103, 3, 4)), (sizes{36, 36, 31}));
}

TEST(butterfly_partition, is_deterministic_and_scale_invariant) {
  const std::vector<double> w = {0.3, 1.7, 2.9, 0.0001, 5.5};
  const auto first = butterfly_partition(1000003, w);
  for (int repeat = 0; repeat < 10; ++repeat)
    EXPECT_EQ(butterfly_partition(1000003, w), first);
  // Power-of-two scaling is exact, so it cannot change the partition.
  std::vector<double> scaled = w;
  for (auto& x : scaled)
    x *= 1024.0;
  EXPECT_EQ(butterfly_partition(1000003, scaled), first);
  for (auto& x : scaled)
    x = std::ldexp(x, -900);
  EXPECT_EQ(butterfly_partition(1000003, scaled), first);
}

TEST(butterfly_partition, refuses_impossible_arguments) {
  const std::vector<double> none;
  EXPECT_THROW(butterfly_partition(10, none), allreduce_error);
  EXPECT_THROW(butterfly_partition(10, 0), allreduce_error);
  const std::vector<double> zeros = {0.0, 0.0};
  EXPECT_THROW(butterfly_partition(10, zeros), allreduce_error);
  const std::vector<double> negative = {1.0, -1.0};
  EXPECT_THROW(butterfly_partition(10, negative), allreduce_error);
  const std::vector<double> not_a_number = {1.0, std::nan("")};
  EXPECT_THROW(butterfly_partition(10, not_a_number), allreduce_error);
  const std::vector<double> infinite = {1.0, INFINITY};
  EXPECT_THROW(butterfly_partition(10, infinite), allreduce_error);
  EXPECT_THROW(butterfly_partition(10, 2, 0), allreduce_error);
  try {
    butterfly_partition(10, negative);
    FAIL();
  } catch (const allreduce_error& e) {
    EXPECT_NE(std::string(e.what()).find("peer 1"), std::string::npos) << e.what();
  }
}

TEST(chunk_ranges, cut_a_part_into_full_chunks_and_a_short_last_one) {
  const auto chunks = chunk_ranges({100, 110}, 4);
  ASSERT_EQ(chunks.size(), 3u);
  EXPECT_EQ(chunks[0], (part_range{100, 104}));
  EXPECT_EQ(chunks[1], (part_range{104, 108}));
  EXPECT_EQ(chunks[2], (part_range{108, 110}));
  EXPECT_TRUE(chunk_ranges({5, 5}, 4).empty());
  EXPECT_EQ(chunk_ranges({0, 3}, 65536).size(), 1u);
  EXPECT_EQ(chunk_ranges({0, 8}, 4).size(), 2u);
  EXPECT_THROW(chunk_ranges({0, 8}, 0), allreduce_error);
  EXPECT_THROW(chunk_ranges({8, 0}, 4), allreduce_error);
}

TEST(chunk_ranges, sweep_covers_the_part) {
  for (std::size_t begin : {0u, 13u})
    for (std::size_t size : {1u, 2u, 7u, 64u, 1000u})
      for (std::size_t chunk : {1u, 3u, 64u, 5000u}) {
        const auto chunks = chunk_ranges({begin, begin + size}, chunk);
        EXPECT_EQ(chunks.size(), (size + chunk - 1) / chunk);
        std::size_t cursor = begin;
        for (const auto& c : chunks) {
          EXPECT_EQ(c.begin, cursor);
          EXPECT_GE(c.size(), 1u);
          EXPECT_LE(c.size(), chunk);
          cursor = c.end;
        }
        EXPECT_EQ(cursor, begin + size);
      }
}

} // namespace
} // namespace ddactor
