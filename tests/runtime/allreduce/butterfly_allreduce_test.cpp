// Tests of the butterfly all-reduce simulation: the exact weighted average for every group size
// 1..16 and vector sizes from 0 to a million, identical bits on every peer, bytes on the wire, and
// the failure semantics (silent sender, partial sender, corrupt chunk, dead reducer).
//
// How results are compared. In the "exact" regime the inputs are multiples of 2^-10 below 8 in
// magnitude and the weights integers below 2^20, so every product w_j x_j and every partial sum is
// exact in double, whatever the order. The only rounding left is the final quotient, which the
// reference computes independently from 64-bit integer sums: float(double(num) / double(den)).
// Rounding a correctly rounded double quotient to float gives the correctly rounded float quotient
// (double rounding is innocuous for division when 53 >= 2 * 24 + 2), so the simulation must match
// the reference exactly, bit for bit. In the "general" regime (arbitrary floats and real weights)
// the reference is a long double sum in another order, and the bound is 1 ulp of the float result
// plus the double summation error, which only matters for elements whose terms cancel.
#include "runtime/allreduce/butterfly_allreduce.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <ostream>
#include <random>
#include <string>
#include <tuple>
#include <vector>

namespace ddactor {
namespace {

using peer_set = std::vector<std::size_t>;

struct exact_group {
  std::vector<std::vector<std::int64_t>> numerators; // x = numerator * 2^-10
  std::vector<std::vector<float>> inputs;
  std::vector<std::int64_t> integer_weights;
  std::vector<double> weights;
};

exact_group make_exact_group(std::size_t n, std::size_t length, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<std::int64_t> numerator(-8192, 8192);
  std::uniform_int_distribution<std::int64_t> weight(1, (1 << 20) - 1);
  exact_group g;
  g.numerators.assign(n, std::vector<std::int64_t>(length));
  g.inputs.assign(n, std::vector<float>(length));
  for (std::size_t j = 0; j < n; ++j) {
    g.integer_weights.push_back(weight(rng));
    g.weights.push_back(static_cast<double>(g.integer_weights.back()));
    for (std::size_t i = 0; i < length; ++i) {
      g.numerators[j][i] = numerator(rng);
      g.inputs[j][i] = std::ldexp(static_cast<float>(g.numerators[j][i]), -10);
    }
  }
  return g;
}

// The correctly rounded float of sum_j w_j x_j[i] / sum_j w_j over `senders`, from integers.
float exact_reference(const exact_group& g, const peer_set& senders, std::size_t i) {
  std::int64_t numerator = 0, denominator = 0;
  for (std::size_t j : senders) {
    numerator += g.integer_weights[j] * g.numerators[j][i];
    denominator += g.integer_weights[j];
  }
  const double quotient = static_cast<double>(numerator) / static_cast<double>(denominator);
  return static_cast<float>(std::ldexp(quotient, -10));
}

peer_set everyone_but(std::size_t n, std::vector<std::size_t> left_out = {}) {
  peer_set result;
  for (std::size_t j = 0; j < n; ++j)
    if (std::find(left_out.begin(), left_out.end(), j) == left_out.end())
      result.push_back(j);
  return result;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * 4) == 0);
}

// Counts elements of `range` in `output` that differ from the reference over `senders`.
std::size_t mismatches(const exact_group& g, const std::vector<float>& output, part_range range,
                       const peer_set& senders) {
  std::size_t wrong = 0;
  for (std::size_t i = range.begin; i < range.end; ++i)
    wrong += output[i] != exact_reference(g, senders, i);
  return wrong;
}

std::size_t chunk_count(part_range part, std::size_t chunk_elements) {
  return (part.size() + chunk_elements - 1) / chunk_elements;
}

// ---- The sweep: group sizes 1..16 x vector sizes x chunk sizes ------------------------------

struct sweep_case {
  std::size_t length;
  std::size_t chunk_elements;
};

void PrintTo(const sweep_case& c, std::ostream* os) {
  *os << "{length " << c.length << ", chunk " << c.chunk_elements << "}";
}

class butterfly_sweep
    : public ::testing::TestWithParam<std::tuple<std::size_t, sweep_case>> {};

TEST_P(butterfly_sweep, every_peer_gets_the_exact_weighted_average) {
  const auto [n, c] = GetParam();
  const exact_group g = make_exact_group(n, c.length, n * 7919 + c.length);
  allreduce_options options;
  options.chunk_elements = c.chunk_elements;
  options.round_id = 17;
  const allreduce_result result = simulate_butterfly_allreduce(g.inputs, g.weights, options);

  ASSERT_EQ(result.outputs.size(), n);
  ASSERT_EQ(result.parts.size(), n);
  const peer_set all = everyone_but(n);
  for (std::size_t r = 0; r < n; ++r) {
    EXPECT_EQ(result.parts[r].outcome, part_outcome::reduced) << "part " << r;
    EXPECT_EQ(result.parts[r].included_senders, all) << "part " << r;
    EXPECT_TRUE(result.parts[r].excluded_senders.empty()) << "part " << r;
    EXPECT_EQ(result.parts[r].rejected_chunks, 0u) << "part " << r;
  }
  ASSERT_TRUE(result.outputs[0].has_value());
  EXPECT_EQ(mismatches(g, *result.outputs[0], {0, c.length}, all), 0u);
  for (std::size_t p = 1; p < n; ++p) {
    ASSERT_TRUE(result.outputs[p].has_value()) << "peer " << p;
    EXPECT_TRUE(same_bits(*result.outputs[p], *result.outputs[0])) << "peer " << p;
  }

  // Bytes on the wire: peer i sends (L - p_i) + (n-1) p_i elements and receives as many, i.e.
  // 2 (n-1)/n L up to the rounding of p_i around L/n (by less than one element here).
  const double optimal_bytes = 2.0 * (n - 1) / n * static_cast<double>(c.length) * 4.0;
  for (std::size_t i = 0; i < n; ++i) {
    const std::size_t p = result.partition[i].size();
    const std::uint64_t exact_bytes = (c.length - p + (n - 1) * p) * 4;
    const peer_traffic& t = result.traffic[i];
    EXPECT_EQ(t.bytes_sent, exact_bytes) << "peer " << i;
    EXPECT_EQ(t.bytes_received, exact_bytes) << "peer " << i;
    EXPECT_LE(std::fabs(static_cast<double>(t.bytes_sent) - optimal_bytes),
              n > 2 ? 4.0 * static_cast<double>(n - 2) : 0.0)
        << "peer " << i;
    std::uint64_t messages = (n - 1) * chunk_count(result.partition[i], c.chunk_elements);
    for (std::size_t r = 0; r < n; ++r)
      if (r != i)
        messages += chunk_count(result.partition[r], c.chunk_elements);
    EXPECT_EQ(t.messages_sent, messages) << "peer " << i;
    EXPECT_EQ(t.messages_received, messages) << "peer " << i;
  }
}

INSTANTIATE_TEST_SUITE_P(
    groups_and_sizes, butterfly_sweep,
    ::testing::Combine(::testing::Range<std::size_t>(1, 17),
                       ::testing::Values(sweep_case{0, 1}, sweep_case{1, 1}, sweep_case{7, 1},
                                         sweep_case{7, 3}, sweep_case{1000003, 4099},
                                         sweep_case{1000003, 65536})),
    [](const auto& info) {
      const sweep_case& c = std::get<1>(info.param);
      return "n" + std::to_string(std::get<0>(info.param)) + "_length" +
             std::to_string(c.length) + "_chunk" + std::to_string(c.chunk_elements);
    });

// ---- Arbitrary floats and real weights ------------------------------------------------------

class butterfly_general_sweep
    : public ::testing::TestWithParam<std::tuple<std::size_t, std::size_t>> {};

TEST_P(butterfly_general_sweep, matches_a_long_double_reference_and_ignores_arrival_order) {
  const auto [n, length] = GetParam();
  std::mt19937_64 rng(n * 31 + length);
  std::uniform_real_distribution<float> mantissa(-1.0f, 1.0f);
  std::uniform_int_distribution<int> exponent(-8, 8);
  std::uniform_real_distribution<double> weight(0.5, 10000.0);
  std::vector<std::vector<float>> inputs(n, std::vector<float>(length));
  std::vector<double> weights(n);
  for (std::size_t j = 0; j < n; ++j) {
    weights[j] = weight(rng);
    for (auto& x : inputs[j])
      x = std::ldexp(mantissa(rng), exponent(rng));
  }
  allreduce_options options;
  options.chunk_elements = 4099;
  const auto in_order = simulate_butterfly_allreduce(inputs, weights, options);
  options.delivery_seed = 12345;
  const auto shuffled = simulate_butterfly_allreduce(inputs, weights, options);

  const std::vector<float>& out = *in_order.outputs[0];
  for (std::size_t p = 0; p < n; ++p) {
    EXPECT_TRUE(same_bits(*in_order.outputs[p], out)) << "peer " << p;
    EXPECT_TRUE(same_bits(*shuffled.outputs[p], out)) << "peer " << p << " (shuffled arrivals)";
  }
  std::size_t not_bit_equal = 0;
  for (std::size_t i = 0; i < length; ++i) {
    long double sum = 0, magnitude = 0, total = 0;
    for (std::size_t j = n; j-- > 0;) {
      sum += static_cast<long double>(weights[j]) * inputs[j][i];
      magnitude += static_cast<long double>(weights[j]) * std::fabs(inputs[j][i]);
      total += weights[j];
    }
    const float reference = static_cast<float>(sum / total);
    const double ulp = std::nextafter(std::fabs(reference), INFINITY) - std::fabs(reference);
    const double summation_error =
        static_cast<double>((n + 2) * std::ldexp(1.0L, -52) * magnitude / total);
    ASSERT_LE(std::fabs(static_cast<double>(out[i]) - reference), ulp + summation_error)
        << "element " << i;
    not_bit_equal += out[i] != reference;
  }
  // Differences are rare: ties near a float rounding boundary or heavy cancellation.
  EXPECT_LE(not_bit_equal, length / 1000 + 8);
}

INSTANTIATE_TEST_SUITE_P(groups_and_sizes, butterfly_general_sweep,
                         ::testing::Combine(::testing::Range<std::size_t>(1, 17),
                                            ::testing::Values<std::size_t>(7, 100003)),
                         [](const auto& info) {
                           return "n" + std::to_string(std::get<0>(info.param)) + "_length" +
                                  std::to_string(std::get<1>(info.param));
                         });

// ---- Failures -------------------------------------------------------------------------------

constexpr std::size_t failure_group = 5;
constexpr std::size_t failure_length = 1003;

allreduce_options failure_options() {
  allreduce_options options;
  options.chunk_elements = 37; // parts of ~200 elements travel as 6 chunks
  return options;
}

TEST(butterfly_allreduce, sender_that_delivers_nothing_is_excluded_from_every_part) {
  const exact_group g = make_exact_group(failure_group, failure_length, 1);
  failure_plan failures;
  failures.sender_delivers_nothing(2);
  const auto result = simulate_butterfly_allreduce(g.inputs, g.weights, failure_options(), failures);
  const peer_set others = everyone_but(failure_group, {2});
  for (const part_status& part : result.parts) {
    EXPECT_EQ(part.outcome, part_outcome::reduced);
    EXPECT_EQ(part.included_senders, others);
    EXPECT_EQ(part.excluded_senders, (peer_set{2}));
  }
  // Every peer, the silent one included (it is alive and receives), holds the renormalized average.
  for (std::size_t p = 0; p < failure_group; ++p) {
    ASSERT_TRUE(result.outputs[p].has_value());
    EXPECT_EQ(mismatches(g, *result.outputs[p], {0, failure_length}, others), 0u) << "peer " << p;
    EXPECT_TRUE(same_bits(*result.outputs[p], *result.outputs[0]));
  }
  EXPECT_EQ(result.traffic[2].bytes_sent, // only its own part, to the others
            (failure_group - 1) * result.partition[2].size() * 4);
}

TEST(butterfly_allreduce, sender_that_delivers_half_a_part_is_excluded_from_that_part_only) {
  const exact_group g = make_exact_group(failure_group, failure_length, 2);
  const std::size_t sender = 1, reducer = 3;
  const part_range target = butterfly_partition(failure_length, failure_group)[reducer];
  const std::size_t chunks = chunk_count(target, failure_options().chunk_elements);
  ASSERT_GE(chunks, 2u);
  failure_plan failures;
  failures.sender_delivers_first_chunks(sender, reducer, chunks / 2);
  const auto result = simulate_butterfly_allreduce(g.inputs, g.weights, failure_options(), failures);

  const peer_set all = everyone_but(failure_group);
  const peer_set without_sender = everyone_but(failure_group, {sender});
  for (std::size_t r = 0; r < failure_group; ++r) {
    const bool hit = r == reducer;
    EXPECT_EQ(result.parts[r].outcome, part_outcome::reduced);
    EXPECT_EQ(result.parts[r].included_senders, hit ? without_sender : all) << "part " << r;
    for (std::size_t p = 0; p < failure_group; ++p)
      EXPECT_EQ(mismatches(g, *result.outputs[p], result.partition[r], hit ? without_sender : all),
                0u)
          << "peer " << p << " part " << r;
  }
  for (std::size_t p = 1; p < failure_group; ++p)
    EXPECT_TRUE(same_bits(*result.outputs[p], *result.outputs[0]));
}

TEST(butterfly_allreduce, corrupt_chunk_is_refused_and_its_sender_excluded_from_that_part) {
  const exact_group g = make_exact_group(failure_group, failure_length, 3);
  failure_plan failures;
  failures.corrupt_chunk(4, 0, 1);
  const auto result = simulate_butterfly_allreduce(g.inputs, g.weights, failure_options(), failures);
  EXPECT_EQ(result.parts[0].rejected_chunks, 1u);
  EXPECT_EQ(result.parts[0].excluded_senders, (peer_set{4}));
  EXPECT_EQ(mismatches(g, *result.outputs[2], result.partition[0], everyone_but(failure_group, {4})),
            0u);
  EXPECT_EQ(result.parts[1].included_senders, everyone_but(failure_group));
}

TEST(butterfly_allreduce, dead_reducer_leaves_its_part_local_on_every_survivor) {
  const exact_group g = make_exact_group(failure_group, failure_length, 4);
  const std::size_t dead = 2;
  failure_plan failures;
  failures.reducer_dies(dead);
  const auto result = simulate_butterfly_allreduce(g.inputs, g.weights, failure_options(), failures);
  EXPECT_FALSE(result.outputs[dead].has_value());
  EXPECT_EQ(result.parts[dead].outcome, part_outcome::reducer_failed);
  const part_range lost = result.partition[dead];
  const peer_set all = everyone_but(failure_group);
  for (std::size_t p = 0; p < failure_group; ++p) {
    if (p == dead)
      continue;
    const std::vector<float>& out = *result.outputs[p];
    // Its own values in the lost part...
    for (std::size_t i = lost.begin; i < lost.end; ++i)
      ASSERT_EQ(out[i], g.inputs[p][i]) << "peer " << p << " element " << i;
    // ...and the full average (the dead peer's slices included: it died after sending them)
    // everywhere else.
    for (std::size_t r = 0; r < failure_group; ++r) {
      if (r != dead) {
        EXPECT_EQ(mismatches(g, out, result.partition[r], all), 0u) << "peer " << p << " part " << r;
      }
    }
  }
  // Nobody sends to the dead peer in the all-gather.
  EXPECT_EQ(result.traffic[dead].bytes_received,
            (failure_group - 1) * lost.size() * 4); // scatter only
}

TEST(butterfly_allreduce, peer_dying_before_sending_is_excluded_and_loses_its_part) {
  const exact_group g = make_exact_group(failure_group, failure_length, 5);
  failure_plan failures;
  failures.sender_delivers_nothing(0).reducer_dies(0);
  const auto result = simulate_butterfly_allreduce(g.inputs, g.weights, failure_options(), failures);
  const peer_set survivors = everyone_but(failure_group, {0});
  for (std::size_t p : survivors) {
    const std::vector<float>& out = *result.outputs[p];
    for (std::size_t i = result.partition[0].begin; i < result.partition[0].end; ++i)
      ASSERT_EQ(out[i], g.inputs[p][i]);
    for (std::size_t r = 1; r < failure_group; ++r)
      EXPECT_EQ(mismatches(g, out, result.partition[r], survivors), 0u);
  }
}

TEST(butterfly_allreduce, part_nobody_delivered_stays_local_everywhere) {
  const exact_group g = make_exact_group(failure_group, failure_length, 6);
  failure_plan failures;
  for (std::size_t s = 0; s < failure_group; ++s)
    failures.sender_delivers_first_chunks(s, 1, 0);
  const auto result = simulate_butterfly_allreduce(g.inputs, g.weights, failure_options(), failures);
  EXPECT_EQ(result.parts[1].outcome, part_outcome::no_complete_sender);
  EXPECT_TRUE(result.parts[1].included_senders.empty());
  for (std::size_t p = 0; p < failure_group; ++p) {
    const std::vector<float>& out = *result.outputs[p];
    for (std::size_t i = result.partition[1].begin; i < result.partition[1].end; ++i)
      ASSERT_EQ(out[i], g.inputs[p][i]);
    EXPECT_EQ(mismatches(g, out, result.partition[0], everyone_but(failure_group)), 0u);
  }
}

TEST(butterfly_allreduce, bandwidth_weights_and_alignment_shape_the_parts_not_the_result) {
  const exact_group g = make_exact_group(4, 10007, 7);
  allreduce_options options;
  options.chunk_elements = 500;
  options.bandwidth_weights = {1.0, 0.0, 3.0, 1.0}; // peer 1 is client-only: it reduces nothing
  options.alignment = 64;
  const auto result = simulate_butterfly_allreduce(g.inputs, g.weights, options);
  EXPECT_TRUE(result.partition[1].empty());
  EXPECT_GT(result.partition[2].size(), 2 * result.partition[0].size());
  for (const auto& part : result.partition)
    EXPECT_TRUE(part.begin % 64 == 0 || part.begin == 10007);
  for (std::size_t p = 0; p < 4; ++p)
    EXPECT_EQ(mismatches(g, *result.outputs[p], {0, 10007}, everyone_but(4)), 0u) << "peer " << p;
  // The client-only peer sends its whole vector out and receives the whole average back.
  EXPECT_EQ(result.traffic[1].bytes_sent, 10007u * 4);
  EXPECT_EQ(result.traffic[1].bytes_received, 10007u * 4);
}

TEST(butterfly_allreduce, arrival_order_never_changes_the_bits) {
  std::mt19937_64 rng(99);
  const std::size_t n = 8, length = 10007;
  std::normal_distribution<float> normal(0.0f, 3.0f);
  std::vector<std::vector<float>> inputs(n, std::vector<float>(length));
  for (auto& v : inputs)
    for (auto& x : v)
      x = normal(rng);
  const std::vector<double> weights = {1.5, 2.25, 7.0, 0.125, 3.3, 9.9, 1.0, 4.4};
  allreduce_options options;
  options.chunk_elements = 100;
  const auto reference = simulate_butterfly_allreduce(inputs, weights, options);
  for (std::uint64_t seed = 1; seed <= 5; ++seed) {
    options.delivery_seed = seed;
    const auto shuffled = simulate_butterfly_allreduce(inputs, weights, options);
    for (std::size_t p = 0; p < n; ++p)
      EXPECT_TRUE(same_bits(*shuffled.outputs[p], *reference.outputs[p])) << "seed " << seed;
  }
}

TEST(butterfly_allreduce, huge_chunk_size_sends_each_part_in_one_message) {
  const exact_group g = make_exact_group(3, 100, 8);
  allreduce_options options;
  options.chunk_elements = std::numeric_limits<std::size_t>::max();
  const auto result = simulate_butterfly_allreduce(g.inputs, g.weights, options);
  for (std::size_t p = 0; p < 3; ++p) {
    EXPECT_EQ(mismatches(g, *result.outputs[p], {0, 100}, everyone_but(3)), 0u);
    EXPECT_EQ(result.traffic[p].messages_sent, 4u); // 2 parts out, its own part to 2 peers
  }
}

TEST(butterfly_allreduce, refuses_impossible_arguments) {
  const std::vector<std::vector<float>> two = {{1, 2}, {3, 4}};
  const allreduce_options options;
  EXPECT_THROW(simulate_butterfly_allreduce({}, {}, options), allreduce_error);
  EXPECT_THROW(simulate_butterfly_allreduce(two, {1.0}, options), allreduce_error);
  EXPECT_THROW(simulate_butterfly_allreduce({{1, 2}, {3}}, {1.0, 1.0}, options), allreduce_error);
  EXPECT_THROW(simulate_butterfly_allreduce(two, {1.0, 0.0}, options), allreduce_error);
  EXPECT_THROW(simulate_butterfly_allreduce(two, {1.0, std::nan("")}, options), allreduce_error);
  allreduce_options bad = options;
  bad.bandwidth_weights = {1.0};
  EXPECT_THROW(simulate_butterfly_allreduce(two, {1.0, 1.0}, bad), allreduce_error);
  bad = options;
  bad.chunk_elements = 0;
  EXPECT_THROW(simulate_butterfly_allreduce(two, {1.0, 1.0}, bad), allreduce_error);
  failure_plan outside;
  outside.reducer_dies(2);
  EXPECT_THROW(simulate_butterfly_allreduce(two, {1.0, 1.0}, options, outside), allreduce_error);
  failure_plan outside_sender;
  outside_sender.sender_delivers_first_chunks(0, 5, 1);
  EXPECT_THROW(simulate_butterfly_allreduce(two, {1.0, 1.0}, options, outside_sender),
               allreduce_error);
}

} // namespace
} // namespace ddactor
