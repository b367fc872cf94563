// Tests of part_reducer: the weighted average itself, bit-identical results for every arrival order,
// exclusion of partial senders, and refusal of every kind of bad chunk without changing state.
#include "runtime/allreduce/weighted_reduction.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

namespace ddactor {
namespace {

struct chunk {
  std::size_t sender;
  std::size_t offset;
  std::vector<float> values;
};

// Cuts each sender's vector into chunks of random sizes (different boundaries per sender).
std::vector<chunk> random_chunks(const std::vector<std::vector<float>>& x, std::mt19937_64& rng) {
  std::vector<chunk> chunks;
  for (std::size_t s = 0; s < x.size(); ++s) {
    std::size_t offset = 0;
    while (offset < x[s].size()) {
      const std::size_t size = std::min<std::size_t>(1 + rng() % 97, x[s].size() - offset);
      chunks.push_back({s, offset, {x[s].begin() + offset, x[s].begin() + offset + size}});
      offset += size;
    }
  }
  return chunks;
}

// Values spanning many orders of magnitude, both signs: a running sum would depend on the order.
std::vector<std::vector<float>> wide_range_values(std::size_t senders, std::size_t length,
                                                  std::mt19937_64& rng) {
  std::uniform_real_distribution<float> mantissa(-1.0f, 1.0f);
  std::uniform_int_distribution<int> exponent(-20, 20);
  std::vector<std::vector<float>> x(senders, std::vector<float>(length));
  for (auto& v : x)
    for (auto& e : v)
      e = std::ldexp(mantissa(rng), exponent(rng));
  return x;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * 4) == 0);
}

TEST(part_reducer, computes_the_weighted_average) {
  part_reducer reducer(3, 2);
  const std::vector<float> a = {1.0f, 2.0f, -4.0f};
  const std::vector<float> b = {4.0f, 8.0f, 2.0f};
  EXPECT_EQ(reducer.accept(0, 0, a, 1.0), accept_status::accepted);
  EXPECT_FALSE(reducer.complete());
  EXPECT_EQ(reducer.accept(1, 0, b, 2.0), accept_status::accepted);
  EXPECT_TRUE(reducer.complete());
  const reduction_result r = reducer.finish();
  ASSERT_TRUE(r.has_average());
  EXPECT_EQ(r.included_senders, (std::vector<std::size_t>{0, 1}));
  EXPECT_DOUBLE_EQ(r.total_weight, 3.0);
  // (1*1 + 2*4)/3 = 3, (2 + 16)/3 = 6, (-4 + 4)/3 = 0
  EXPECT_EQ(r.values, (std::vector<float>{3.0f, 6.0f, 0.0f}));
}

TEST(part_reducer, matches_an_independent_long_double_reference) {
  std::mt19937_64 rng(7);
  const std::size_t senders = 6, length = 5000;
  const auto x = wide_range_values(senders, length, rng);
  std::vector<double> w(senders);
  for (auto& v : w)
    v = 1.0 + static_cast<double>(rng() % 100000) / 7.0;
  part_reducer reducer(length, senders);
  for (const chunk& c : random_chunks(x, rng))
    ASSERT_EQ(reducer.accept(c.sender, c.offset, c.values, w[c.sender]), accept_status::accepted);
  const auto r = reducer.finish();
  ASSERT_EQ(r.values.size(), length);
  for (std::size_t i = 0; i < length; ++i) {
    long double sum = 0, total = 0, magnitude = 0;
    for (std::size_t s = senders; s-- > 0;) { // reverse order, unscaled weights: independent
      sum += static_cast<long double>(w[s]) * x[s][i];
      magnitude += static_cast<long double>(w[s]) * std::fabs(x[s][i]);
      total += w[s];
    }
    const float reference = static_cast<float>(sum / total);
    // One float ulp for the final rounding, plus the double summation error, which only matters
    // when the terms cancel (bound: (senders + 2) * 2^-52 * sum |w x| / sum w).
    const double tolerance =
        std::nextafter(std::fabs(reference), INFINITY) - std::fabs(reference) +
        static_cast<double>((senders + 2) * std::ldexp(1.0L, -52) * magnitude / total);
    EXPECT_LE(std::fabs(static_cast<double>(r.values[i]) - reference), tolerance) << "element " << i;
  }
}

TEST(part_reducer, every_arrival_order_gives_bit_identical_results) {
  std::mt19937_64 rng(42);
  const std::size_t senders = 7, length = 3001;
  const auto x = wide_range_values(senders, length, rng);
  std::vector<double> w(senders);
  for (auto& v : w)
    v = 0.5 + static_cast<double>(rng() % 1000000) / 3.0;
  std::vector<chunk> chunks = random_chunks(x, rng);

  std::vector<float> first;
  bool naive_sum_depends_on_order = false;
  std::vector<double> first_naive;
  for (int trial = 0; trial < 25; ++trial) {
    std::shuffle(chunks.begin(), chunks.end(), rng);
    part_reducer reducer(length, senders);
    std::vector<double> naive(length, 0.0); // a running sum in arrival order, for contrast
    for (const chunk& c : chunks) {
      ASSERT_EQ(reducer.accept(c.sender, c.offset, c.values, w[c.sender]), accept_status::accepted);
      for (std::size_t k = 0; k < c.values.size(); ++k)
        naive[c.offset + k] += w[c.sender] * c.values[k];
    }
    ASSERT_TRUE(reducer.complete());
    const auto result = reducer.finish();
    if (trial == 0) {
      first = result.values;
      first_naive = naive;
      continue;
    }
    EXPECT_TRUE(same_bits(result.values, first)) << "trial " << trial;
    naive_sum_depends_on_order = naive_sum_depends_on_order || naive != first_naive;
  }
  // The data really does make floating-point order matter, so the check above has teeth.
  EXPECT_TRUE(naive_sum_depends_on_order);
}

TEST(part_reducer, sender_with_missing_chunks_is_left_out_and_weights_renormalized) {
  std::mt19937_64 rng(3);
  const std::size_t senders = 4, length = 500;
  const auto x = wide_range_values(senders, length, rng);
  const std::vector<double> w = {1.0, 2.0, 3.0, 4.0};
  const std::vector<chunk> chunks = random_chunks(x, rng);

  part_reducer with_partial(length, senders);
  part_reducer without(length, senders);
  bool skipped = false;
  for (const chunk& c : chunks) {
    // `with_partial` gets everything but sender 2's last chunk; `without` nothing from sender 2.
    const bool last_of_sender_2 = c.sender == 2 && c.offset + c.values.size() == length;
    if (!last_of_sender_2) {
      ASSERT_EQ(with_partial.accept(c.sender, c.offset, c.values, w[c.sender]),
                accept_status::accepted);
    }
    skipped = skipped || last_of_sender_2;
    if (c.sender != 2) {
      ASSERT_EQ(without.accept(c.sender, c.offset, c.values, w[c.sender]), accept_status::accepted);
    }
  }
  ASSERT_TRUE(skipped);
  EXPECT_FALSE(with_partial.complete());
  EXPECT_FALSE(with_partial.sender_complete(2));
  EXPECT_LT(with_partial.delivered_elements(2), length);
  EXPECT_GT(with_partial.delivered_elements(2), 0u);

  const auto a = with_partial.finish();
  const auto b = without.finish();
  EXPECT_EQ(a.included_senders, (std::vector<std::size_t>{0, 1, 3}));
  EXPECT_DOUBLE_EQ(a.total_weight, 7.0);
  EXPECT_TRUE(same_bits(a.values, b.values));
  // And it is the average over the others: check one element by hand.
  const double expected = (1.0 * x[0][10] + 2.0 * x[1][10] + 4.0 * x[3][10]) / 7.0;
  EXPECT_EQ(a.values[10], static_cast<float>(expected));
}

TEST(part_reducer, no_complete_sender_means_no_average) {
  part_reducer reducer(10, 3);
  EXPECT_FALSE(reducer.finish().has_average());
  const std::vector<float> half(5, 1.0f);
  ASSERT_EQ(reducer.accept(1, 0, half, 1.0), accept_status::accepted);
  const auto r = reducer.finish();
  EXPECT_FALSE(r.has_average());
  EXPECT_TRUE(r.values.empty());
  EXPECT_TRUE(r.included_senders.empty());
}

TEST(part_reducer, empty_part_is_complete_for_everyone) {
  part_reducer reducer(0, 3);
  EXPECT_TRUE(reducer.complete());
  const auto r = reducer.finish();
  EXPECT_TRUE(r.has_average());
  EXPECT_TRUE(r.values.empty());
  EXPECT_EQ(r.included_senders, (std::vector<std::size_t>{0, 1, 2}));
  const std::vector<float> one = {1.0f};
  EXPECT_EQ(reducer.accept(0, 0, one, 1.0), accept_status::outside_part);
}

TEST(part_reducer, extreme_weights_and_values_stay_finite) {
  part_reducer reducer(2, 2);
  const std::vector<float> big = {FLT_MAX, -FLT_MAX};
  const std::vector<float> small = {FLT_MAX, 1.0f};
  ASSERT_EQ(reducer.accept(0, 0, big, 1e300), accept_status::accepted);
  ASSERT_EQ(reducer.accept(1, 0, small, 1e-300), accept_status::accepted);
  const auto r = reducer.finish();
  EXPECT_EQ(r.values[0], FLT_MAX);
  EXPECT_EQ(r.values[1], -FLT_MAX);

  part_reducer alone(3, 1);
  const std::vector<float> x = {0.1f, -7.3e-30f, 3.3e30f};
  ASSERT_EQ(alone.accept(0, 0, x, 12345.678), accept_status::accepted);
  EXPECT_EQ(alone.finish().values, x); // one sender: its values, exactly
}

TEST(part_reducer, refuses_bad_chunks_and_stays_unchanged) {
  part_reducer reducer(10, 2);
  const std::vector<float> four(4, 1.0f);
  const std::vector<float> none;
  ASSERT_EQ(reducer.accept(0, 2, four, 2.0), accept_status::accepted); // [2, 6)

  EXPECT_EQ(reducer.accept(2, 0, four, 2.0), accept_status::unknown_sender);
  EXPECT_EQ(reducer.accept(std::numeric_limits<std::size_t>::max(), 0, four, 2.0),
            accept_status::unknown_sender);
  EXPECT_EQ(reducer.accept(0, 0, none, 2.0), accept_status::empty_chunk);
  EXPECT_EQ(reducer.accept(0, 7, four, 2.0), accept_status::outside_part);
  EXPECT_EQ(reducer.accept(0, 10, four, 2.0), accept_status::outside_part);
  EXPECT_EQ(reducer.accept(0, std::numeric_limits<std::size_t>::max() - 1, four, 2.0),
            accept_status::outside_part);
  EXPECT_EQ(reducer.accept(1, 0, four, 0.0), accept_status::bad_weight);
  EXPECT_EQ(reducer.accept(1, 0, four, -1.0), accept_status::bad_weight);
  EXPECT_EQ(reducer.accept(1, 0, four, std::nan("")), accept_status::bad_weight);
  EXPECT_EQ(reducer.accept(1, 0, four, INFINITY), accept_status::bad_weight);
  EXPECT_EQ(reducer.accept(0, 6, four, 3.0), accept_status::weight_changed);
  EXPECT_EQ(reducer.accept(0, 2, four, 2.0), accept_status::duplicate_chunk); // same chunk
  EXPECT_EQ(reducer.accept(0, 0, four, 2.0), accept_status::duplicate_chunk); // [0,4) over [2,6)
  EXPECT_EQ(reducer.accept(0, 5, four, 2.0), accept_status::duplicate_chunk); // [5,9) over [2,6)
  const std::vector<float> one(1, 1.0f);
  EXPECT_EQ(reducer.accept(0, 3, one, 2.0), accept_status::duplicate_chunk);  // inside
  const std::vector<float> wide(8, 1.0f);
  EXPECT_EQ(reducer.accept(0, 1, wide, 2.0), accept_status::duplicate_chunk); // around
  for (float bad : {std::numeric_limits<float>::quiet_NaN(), INFINITY, -INFINITY}) {
    std::vector<float> poisoned = {1.0f, 2.0f, bad};
    EXPECT_EQ(reducer.accept(1, 7, poisoned, 1.0), accept_status::non_finite_value);
  }

  // Nothing above changed the state: the deliveries are as before, and good chunks still fit.
  EXPECT_EQ(reducer.delivered_elements(0), 4u);
  EXPECT_EQ(reducer.delivered_elements(1), 0u);
  const std::vector<float> two(2, 3.0f);
  EXPECT_EQ(reducer.accept(0, 0, two, 2.0), accept_status::accepted); // touching on the left
  EXPECT_EQ(reducer.accept(0, 6, four, 2.0), accept_status::accepted); // touching on the right
  EXPECT_TRUE(reducer.sender_complete(0));
  EXPECT_EQ(reducer.accept(0, 9, one, 2.0), accept_status::duplicate_chunk); // complete now
  const std::vector<float> ten(10, 5.0f);
  EXPECT_EQ(reducer.accept(1, 0, ten, 2.0), accept_status::accepted);
  EXPECT_TRUE(reducer.complete());
  const auto r = reducer.finish();
  EXPECT_EQ(r.values, (std::vector<float>{4, 4, 3, 3, 3, 3, 3, 3, 3, 3}));
}

TEST(part_reducer, accept_or_throw_says_why) {
  part_reducer reducer(4, 2);
  const std::vector<float> v = {1.0f, std::nanf("")};
  try {
    reducer.accept_or_throw(1, 2, v, 1.0);
    FAIL() << "no exception";
  } catch (const reduction_error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("sender 1"), std::string::npos) << what;
    EXPECT_NE(what.find("NaN"), std::string::npos) << what;
  }
  const std::vector<float> ok = {1.0f, 2.0f};
  EXPECT_NO_THROW(reducer.accept_or_throw(1, 2, ok, 1.0));
}

TEST(part_reducer, misuse_throws) {
  EXPECT_THROW(part_reducer(10, 0), reduction_error);
  part_reducer reducer(10, 2);
  EXPECT_THROW((void)reducer.sender_complete(2), reduction_error);
  EXPECT_THROW((void)reducer.delivered_elements(5), reduction_error);
  EXPECT_EQ(to_string(accept_status::duplicate_chunk),
            "chunk overlaps values the sender already delivered");
}

} // namespace
} // namespace ddactor

namespace ddactor {
namespace {

// A reducer may send a range as soon as every sender delivered it: the values equal what finish()
// gives there once all is in, bit for bit.
TEST(part_reducer_ranges, a_complete_range_averages_exactly_as_finish_does) {
  part_reducer reducer(6, 3);
  const std::vector<float> a = {1.5f, -2.25f, 3.0f, 0.1f, 7.0f, -1.0f};
  const std::vector<float> b = {0.3f, 4.0f, -5.5f, 2.2f, 0.0f, 9.75f};
  const std::vector<float> c = {-0.7f, 1.0f, 2.5f, -3.3f, 6.1f, 0.4f};
  reducer.accept_or_throw(0, 0, std::span(a).subspan(0, 3), 3.0);
  reducer.accept_or_throw(1, 0, std::span(b).subspan(0, 3), 5.0);
  EXPECT_FALSE(reducer.range_complete(0, 3));
  EXPECT_THROW((void)reducer.average_of_range(0, 3), reduction_error);
  reducer.accept_or_throw(2, 0, std::span(c).subspan(0, 2), 1.0);
  EXPECT_FALSE(reducer.range_complete(0, 3));
  EXPECT_TRUE(reducer.range_complete(0, 2));
  reducer.accept_or_throw(2, 2, std::span(c).subspan(2, 1), 1.0);
  ASSERT_TRUE(reducer.range_complete(0, 3));
  const auto early = reducer.average_of_range(0, 3);
  EXPECT_FALSE(reducer.range_complete(3, 6));
  for (size_t sender = 0; sender < 3; ++sender) {
    const auto& x = sender == 0 ? a : (sender == 1 ? b : c);
    reducer.accept_or_throw(sender, 3, std::span(x).subspan(3, 3), sender == 0 ? 3.0 : (sender == 1 ? 5.0 : 1.0));
  }
  const auto all = reducer.finish();
  ASSERT_EQ(all.values.size(), 6u);
  for (size_t i = 0; i < 3; ++i)
    EXPECT_EQ(early[i], all.values[i]) << i;
  const auto late = reducer.average_of_range(3, 6);
  for (size_t i = 0; i < 3; ++i)
    EXPECT_EQ(late[i], all.values[3 + i]) << i;
  EXPECT_FALSE(reducer.range_complete(4, 7));
  EXPECT_FALSE(reducer.range_complete(2, 2));
}

// accept_shared keeps the caller's buffers (the caller lets go of them at once), and ranges that cut
// across chunks of different senders average exactly as finish() does.
TEST(part_reducer_ranges, shared_chunks_with_different_boundaries_average_as_finish_does) {
  std::mt19937_64 rng(7);
  const std::size_t senders = 4, length = 2000;
  const auto x = wide_range_values(senders, length, rng);
  part_reducer reducer(length, senders);
  for (chunk& c : random_chunks(x, rng)) {
    auto owned = std::make_shared<const std::vector<float>>(std::move(c.values));
    const std::span<const float> view(*owned);
    ASSERT_EQ(reducer.accept_shared(c.sender, c.offset, std::move(owned), view, 1.0 + c.sender),
              accept_status::accepted);
  }
  const auto all = reducer.finish();
  ASSERT_EQ(all.values.size(), length);
  for (int trial = 0; trial < 50; ++trial) {
    const std::size_t begin = rng() % length;
    const std::size_t end = begin + 1 + rng() % (length - begin);
    const auto range = reducer.average_of_range(begin, end);
    ASSERT_TRUE(same_bits(range, {all.values.begin() + static_cast<std::ptrdiff_t>(begin),
                                  all.values.begin() + static_cast<std::ptrdiff_t>(end)}))
      << "[" << begin << ", " << end << ")";
  }
  // A refused shared chunk leaves the reducer unchanged and is not kept.
  auto bad = std::make_shared<const std::vector<float>>(3, std::numeric_limits<float>::infinity());
  EXPECT_EQ(reducer.accept_shared(0, 0, bad, std::span<const float>(*bad), 1.0),
            accept_status::duplicate_chunk);
  EXPECT_EQ(bad.use_count(), 1);
}

} // namespace
} // namespace ddactor
