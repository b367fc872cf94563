// Tests of the bucketed data order, swept over batch sizes and bucket layouts: every epoch visits
// each example once, in batches of one bucket no larger than the batch size; the order is a pure
// function of (seed, epoch, position), so a cursor resumes it; seeds and epochs differ.
#include "runtime/bucketed_order.hpp"

#include <gtest/gtest.h>

#include <map>
#include <set>

using namespace ddactor;

namespace {

// n examples spread over `buckets` buckets unevenly (bucket b gets about twice b + 1's share).
std::vector<int> uneven_buckets(int n, int buckets) {
  std::vector<int> out;
  for (int i = 0; i < n; ++i)
    out.push_back(buckets == 1 ? 0 : (i * i) % buckets);
  return out;
}

std::vector<std::vector<int64_t>> one_epoch(bucketed_order& order, int64_t epoch) {
  std::vector<std::vector<int64_t>> batches;
  data_cursor cursor{epoch, 0};
  do
    batches.push_back(order.next_batch(cursor));
  while (cursor.epoch == epoch);
  EXPECT_EQ(cursor, (data_cursor{epoch + 1, 0}));
  return batches;
}

} // namespace

struct order_case {
  int n;
  int buckets;
  int64_t batch_size;
};

class bucketed_order_sweep : public ::testing::TestWithParam<order_case> {};

TEST_P(bucketed_order_sweep, every_epoch_visits_each_example_once_in_single_bucket_batches) {
  const auto [n, buckets, batch_size] = GetParam();
  const auto bucket_of = uneven_buckets(n, buckets);
  bucketed_order order(bucket_of, batch_size, 42);
  for (int64_t epoch : {0, 1, 7}) {
    std::multiset<int64_t> seen;
    std::map<int, int> small_batches;  // per bucket: batches below batch_size
    for (const auto& batch : one_epoch(order, epoch)) {
      ASSERT_FALSE(batch.empty());
      ASSERT_LE(static_cast<int64_t>(batch.size()), batch_size);
      const int bucket = bucket_of[static_cast<size_t>(batch.front())];
      for (auto i : batch) {
        EXPECT_EQ(bucket_of[static_cast<size_t>(i)], bucket);
        seen.insert(i);
      }
      if (static_cast<int64_t>(batch.size()) < batch_size)
        ++small_batches[bucket];
    }
    ASSERT_EQ(seen.size(), static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i)
      EXPECT_EQ(seen.count(i), 1u) << i;
    for (const auto& [bucket, count] : small_batches)
      EXPECT_EQ(count, 1) << "bucket " << bucket << " has more than one partial batch";
  }
}

TEST_P(bucketed_order_sweep, a_cursor_resumes_the_same_order) {
  const auto [n, buckets, batch_size] = GetParam();
  bucketed_order reference(uneven_buckets(n, buckets), batch_size, 9);
  std::vector<std::pair<data_cursor, std::vector<int64_t>>> run;
  data_cursor cursor;
  for (int k = 0; k < 3 * n / static_cast<int>(batch_size) + 3; ++k) {
    const auto at = cursor;
    run.emplace_back(at, reference.next_batch(cursor));
  }
  // A fresh order (a restarted loader) from any recorded cursor gives the same batch.
  for (size_t k = 0; k < run.size(); k += 3) {
    bucketed_order resumed(uneven_buckets(n, buckets), batch_size, 9);
    auto at = run[k].first;
    EXPECT_EQ(resumed.next_batch(at), run[k].second) << "batch " << k;
  }
}

INSTANTIATE_TEST_SUITE_P(layouts, bucketed_order_sweep,
                         ::testing::Values(order_case{1, 1, 1}, order_case{10, 1, 4},
                                           order_case{10, 3, 4}, order_case{37, 5, 8},
                                           order_case{64, 4, 64}, order_case{100, 7, 3}));

TEST(bucketed_order, seeds_and_epochs_give_different_orders) {
  const auto buckets = uneven_buckets(50, 3);
  bucketed_order a(buckets, 4, 1), b(buckets, 4, 2), a_again(buckets, 4, 1);
  EXPECT_EQ(one_epoch(a, 0), one_epoch(a_again, 0));
  EXPECT_NE(one_epoch(a, 0), one_epoch(b, 0));
  EXPECT_NE(one_epoch(a, 0), one_epoch(a, 1));
}

TEST(bucketed_order, a_position_inside_a_batch_resumes_at_the_next_batch) {
  bucketed_order order(uneven_buckets(20, 2), 4, 3);
  data_cursor cursor{0, 0};
  const auto first = order.next_batch(cursor);
  const auto second = order.next_batch(cursor);
  data_cursor odd{0, 1};  // saved with another batch size
  EXPECT_EQ(order.next_batch(odd), second);
  EXPECT_NE(first, second);
}

TEST(bucketed_order, bad_arguments_are_refused) {
  EXPECT_THROW(bucketed_order({}, 4, 0), data_order_error);
  EXPECT_THROW(bucketed_order({0, 1}, 0, 0), data_order_error);
  EXPECT_THROW(bucketed_order({0, -1}, 2, 0), data_order_error);
}
