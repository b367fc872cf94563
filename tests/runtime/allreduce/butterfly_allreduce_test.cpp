// Tests of the butterfly all-reduce simulation, i.e. of butterfly_round driven over a simulated
// network: the exact weighted average for every group size 1..16 and vector sizes from 0 to a
// million, identical bits on every peer, bytes on the wire, and the one failure semantics (a peer
// that crashes before, while or after sending, a corrupt chunk, a dead reducer: the survivors
// restart without it), with arrivals shuffled.
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

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <optional>
#include <ostream>
#include <random>
#include <set>
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

  ASSERT_EQ(result.members.size(), n);
  const peer_set all = everyone_but(n);
  for (std::size_t p = 0; p < n; ++p) {
    const simulated_member& m = result.members[p];
    EXPECT_EQ(m.result, n > 1 ? round_result::averaged : round_result::alone) << "peer " << p;
    EXPECT_EQ(m.restarts, 0) << "peer " << p;
    EXPECT_EQ(m.rejected_chunks, 0u) << "peer " << p;
    EXPECT_EQ(m.digest_mismatches, 0u) << "peer " << p;
  }
  ASSERT_TRUE(result.members[0].output.has_value());
  EXPECT_EQ(mismatches(g, *result.members[0].output, {0, c.length}, all), 0u);
  for (std::size_t p = 1; p < n; ++p) {
    ASSERT_TRUE(result.members[p].output.has_value()) << "peer " << p;
    EXPECT_TRUE(same_bits(*result.members[p].output, *result.members[0].output)) << "peer " << p;
  }

  // Bytes on the wire: peer i sends (L - p_i) + (n-1) p_i elements and receives as many, i.e.
  // 2 (n-1)/n L up to the rounding of p_i around L/n (by less than one element here).
  const double optimal_bytes = 2.0 * (n - 1) / n * static_cast<double>(c.length) * 4.0;
  for (std::size_t i = 0; i < n; ++i) {
    const std::size_t p = result.partition[i].size();
    const std::uint64_t exact_bytes = (c.length - p + (n - 1) * p) * 4;
    const peer_traffic& t = result.members[i].traffic;
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

  const std::vector<float>& out = *in_order.members[0].output;
  for (std::size_t p = 0; p < n; ++p) {
    EXPECT_TRUE(same_bits(*in_order.members[p].output, out)) << "peer " << p;
    EXPECT_TRUE(same_bits(*shuffled.members[p].output, out))
        << "peer " << p << " (shuffled arrivals)";
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

// Every survivor holds the exact average over `survivors`, bit-identical; the others crashed.
void expect_survivors_average(const exact_group& g, const allreduce_result& result,
                              const peer_set& survivors) {
  const auto n = result.members.size();
  const std::vector<float>* first = nullptr;
  for (std::size_t p = 0; p < n; ++p) {
    const simulated_member& m = result.members[p];
    const bool survives = std::find(survivors.begin(), survivors.end(), p) != survivors.end();
    if (!survives) {
      EXPECT_TRUE(m.crashed || m.result == round_result::missed) << "peer " << p;
      continue;
    }
    ASSERT_TRUE(m.output.has_value()) << "peer " << p;
    EXPECT_EQ(m.result, survivors.size() > 1 ? round_result::averaged : round_result::alone)
        << "peer " << p;
    EXPECT_EQ(mismatches(g, *m.output, {0, g.inputs[0].size()}, survivors), 0u) << "peer " << p;
    EXPECT_EQ(m.digest_mismatches, 0u) << "peer " << p;
    if (first == nullptr)
      first = &*m.output;
    EXPECT_TRUE(same_bits(*m.output, *first)) << "peer " << p;
  }
}

TEST(butterfly_allreduce, peer_that_crashes_at_start_is_dropped_and_the_rest_average_without_it) {
  const exact_group g = make_exact_group(failure_group, failure_length, 1);
  failure_plan failures;
  failures.peer_crashes_at_start(2);
  const auto result = simulate_butterfly_allreduce(g.inputs, g.weights, failure_options(), failures);
  EXPECT_TRUE(result.members[2].crashed);
  EXPECT_FALSE(result.members[2].output.has_value());
  expect_survivors_average(g, result, everyone_but(failure_group, {2}));
  for (std::size_t p : everyone_but(failure_group, {2})) {
    EXPECT_EQ(result.members[p].restarts, 1) << "peer " << p;
    EXPECT_EQ(result.members[p].member_set, 0b11011u) << "peer " << p;
  }
}

TEST(butterfly_allreduce, sender_that_crashes_halfway_through_a_part_is_dropped_from_every_part) {
  const exact_group g = make_exact_group(failure_group, failure_length, 2);
  const std::size_t sender = 1, reducer = 3;
  const part_range target = butterfly_partition(failure_length, failure_group)[reducer];
  const std::size_t chunks = chunk_count(target, failure_options().chunk_elements);
  ASSERT_GE(chunks, 2u);
  failure_plan failures;
  failures.sender_crashes_after_chunks(sender, reducer, chunks / 2);
  const auto result = simulate_butterfly_allreduce(g.inputs, g.weights, failure_options(), failures);
  EXPECT_TRUE(result.members[sender].crashed);
  // Never a mixture: the parts it had sent in full are averaged without it too.
  expect_survivors_average(g, result, everyone_but(failure_group, {sender}));
}

TEST(butterfly_allreduce, corrupt_chunk_drops_its_sender_which_keeps_its_own_values) {
  const exact_group g = make_exact_group(failure_group, failure_length, 3);
  failure_plan failures;
  failures.corrupt_chunk(4, 0, 1);
  const auto result = simulate_butterfly_allreduce(g.inputs, g.weights, failure_options(), failures);
  EXPECT_GE(result.members[0].rejected_chunks, 1u);
  expect_survivors_average(g, result, everyone_but(failure_group, {4}));
  // The survivors' chunks tell it that it was dropped: it ends at once, as missed (applying
  // nothing), instead of waiting for its deadline.
  const simulated_member& cut_off = result.members[4];
  EXPECT_FALSE(cut_off.crashed);
  EXPECT_EQ(cut_off.result, round_result::missed);
  ASSERT_TRUE(cut_off.output.has_value());
  EXPECT_TRUE(same_bits(*cut_off.output, g.inputs[4]));
}

TEST(butterfly_allreduce, dead_reducer_is_dropped_and_the_survivors_average_without_it) {
  const exact_group g = make_exact_group(failure_group, failure_length, 4);
  const std::size_t dead = 2;
  failure_plan failures;
  failures.reducer_dies(dead);
  const auto result = simulate_butterfly_allreduce(g.inputs, g.weights, failure_options(), failures);
  EXPECT_TRUE(result.members[dead].crashed);
  expect_survivors_average(g, result, everyone_but(failure_group, {dead}));
}

TEST(butterfly_allreduce, several_failures_leave_the_survivors_one_average) {
  const exact_group g = make_exact_group(failure_group, failure_length, 5);
  failure_plan failures;
  failures.peer_crashes_at_start(0).reducer_dies(3).sender_crashes_after_chunks(1, 4, 2);
  const auto result = simulate_butterfly_allreduce(g.inputs, g.weights, failure_options(), failures);
  expect_survivors_average(g, result, peer_set{2, 4});
}

TEST(butterfly_allreduce, a_member_whose_partners_all_crash_ends_alone_with_its_own_values) {
  const exact_group g = make_exact_group(failure_group, failure_length, 6);
  failure_plan failures;
  for (std::size_t s = 1; s < failure_group; ++s)
    failures.peer_crashes_at_start(s);
  const auto result = simulate_butterfly_allreduce(g.inputs, g.weights, failure_options(), failures);
  EXPECT_EQ(result.members[0].result, round_result::alone);
  ASSERT_TRUE(result.members[0].output.has_value());
  EXPECT_TRUE(same_bits(*result.members[0].output, g.inputs[0]));
}

TEST(butterfly_allreduce, failures_with_shuffled_arrivals_give_the_same_bits) {
  const exact_group g = make_exact_group(6, 2011, 9);
  allreduce_options options = failure_options();
  failure_plan failures;
  // Crashes, which happen whatever the order (a corrupt chunk may arrive after its receiver left
  // that attempt, and is then merely stale).
  failures.sender_crashes_after_chunks(5, 1, 3).reducer_dies(3);
  const auto reference = simulate_butterfly_allreduce(g.inputs, g.weights, options, failures);
  expect_survivors_average(g, reference, peer_set{0, 1, 2, 4});
  for (std::uint64_t seed = 1; seed <= 8; ++seed) {
    options.delivery_seed = seed;
    const auto shuffled = simulate_butterfly_allreduce(g.inputs, g.weights, options, failures);
    expect_survivors_average(g, shuffled, peer_set{0, 1, 2, 4});
    for (std::size_t p : peer_set{0, 1, 2, 4})
      EXPECT_TRUE(same_bits(*shuffled.members[p].output, *reference.members[p].output))
          << "seed " << seed << " peer " << p;
  }
}

// A partial partition: members 0 and 1 lose the link between them (each sees the other gone) while
// both still reach everyone. Members that learn of different failures move to the intersection of
// the member sets they see, so in every arrival order the round ends without a deadline: one
// agreed set averages (never both 0 and 1 in it) and whoever it left out ends as missed.
TEST(butterfly_allreduce, a_link_cut_between_two_members_ends_in_one_agreed_set) {
  const exact_group g = make_exact_group(failure_group, failure_length, 5);
  allreduce_options options = failure_options();
  failure_plan failures;
  failures.link_cut(0, 1);
  std::set<std::uint64_t> sets_seen;
  for (std::uint64_t seed = 0; seed <= 40; ++seed) {
    options.delivery_seed = seed;
    const auto result = simulate_butterfly_allreduce(g.inputs, g.weights, options, failures);
    std::optional<std::uint64_t> agreed;
    for (const auto& m : result.members)
      if (m.result == round_result::averaged) {
        EXPECT_TRUE(!agreed || *agreed == m.member_set) << "seed " << seed;
        agreed = m.member_set;
      }
    ASSERT_TRUE(agreed.has_value()) << "seed " << seed;
    EXPECT_NE(*agreed & 0b11u, 0b11u) << "seed " << seed;
    sets_seen.insert(*agreed);
    peer_set survivors;
    for (std::size_t p = 0; p < failure_group; ++p)
      if ((*agreed >> p) & 1u)
        survivors.push_back(p);
    // Nobody reached its deadline: the survivors averaged, the others know they were left out.
    expect_survivors_average(g, result, survivors);
  }
  // Only the link's ends are ever left out.
  for (std::uint64_t set : sets_seen)
    EXPECT_EQ(set & 0b11100u, 0b11100u) << set;
}

TEST(butterfly_allreduce, part_shares_shape_the_parts_not_the_result) {
  const exact_group g = make_exact_group(4, 10007, 7);
  allreduce_options options;
  options.chunk_elements = 500;
  options.part_shares = {1, 0, 3, 1}; // peer 1 is client-only: it reduces nothing
  const auto result = simulate_butterfly_allreduce(g.inputs, g.weights, options);
  EXPECT_TRUE(result.partition[1].empty());
  EXPECT_GT(result.partition[2].size(), 2 * result.partition[0].size());
  expect_survivors_average(g, result, everyone_but(4));
  // The client-only peer sends its whole vector out and receives the whole average back.
  EXPECT_EQ(result.members[1].traffic.bytes_sent, 10007u * 4);
  EXPECT_EQ(result.members[1].traffic.bytes_received, 10007u * 4);
}

TEST(butterfly_allreduce, a_huge_weight_claim_is_clipped_and_the_average_stays_near_the_honest_one) {
  const exact_group g = make_exact_group(4, 1000, 11);
  auto weights = g.weights;
  weights[3] = 1e15;  // a hostile claim: would make the average member 3's values
  allreduce_options options;
  options.chunk_elements = 100;
  options.max_weight_ratio = 2;
  const auto result = simulate_butterfly_allreduce(g.inputs, weights, options);
  // Every member holds the same average, in which member 3 weighs at most 2 x the median.
  std::vector<double> clipped = weights;
  std::vector<double> sorted = {weights[0], weights[1], weights[2], weights[3]};
  std::sort(sorted.begin(), sorted.end());
  clipped[3] = 2 * sorted[1];
  for (std::size_t p = 0; p < 4; ++p) {
    ASSERT_TRUE(result.members[p].output.has_value());
    EXPECT_TRUE(same_bits(*result.members[p].output, *result.members[0].output));
  }
  const auto& out = *result.members[0].output;
  for (std::size_t i = 0; i < 1000; ++i) {
    double num = 0, den = 0;
    for (std::size_t j = 0; j < 4; ++j) {
      num += clipped[j] * g.inputs[j][i];
      den += clipped[j];
    }
    ASSERT_NEAR(out[i], num / den, 1e-5) << i;
  }
}

TEST(butterfly_allreduce, topk_error_feedback_is_the_rounds_outcome) {
  const exact_group g = make_exact_group(3, 3001, 10);
  allreduce_options options;
  options.chunk_elements = 256;
  codec_options settings;
  settings.topk_fraction = 0.1;
  options.policy = chunk_policy("topk", settings);
  const auto result = simulate_butterfly_allreduce(g.inputs, g.weights, options);
  for (std::size_t p = 0; p < 3; ++p) {
    const simulated_member& m = result.members[p];
    EXPECT_EQ(m.result, round_result::averaged);
    EXPECT_EQ(m.digest_mismatches, 0u);
    EXPECT_TRUE(same_bits(*m.output, *result.members[0].output));
    // Every value was either sent (nothing left over) or kept back whole for the next round.
    ASSERT_EQ(m.residual.size(), 3001u);
    std::size_t sent = 0;
    for (std::size_t i = 0; i < 3001; ++i) {
      ASSERT_TRUE(m.residual[i] == 0.0f || m.residual[i] == g.inputs[p][i]) << "element " << i;
      sent += m.residual[i] == 0.0f && g.inputs[p][i] != 0.0f;
    }
    EXPECT_GT(sent, 3001u / 20);
    EXPECT_LT(sent, 3001u / 5);
  }
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
      EXPECT_TRUE(same_bits(*shuffled.members[p].output, *reference.members[p].output))
          << "seed " << seed;
  }
}

TEST(butterfly_allreduce, huge_chunk_size_sends_each_part_in_one_message) {
  const exact_group g = make_exact_group(3, 100, 8);
  allreduce_options options;
  options.chunk_elements = std::numeric_limits<std::size_t>::max();
  const auto result = simulate_butterfly_allreduce(g.inputs, g.weights, options);
  for (std::size_t p = 0; p < 3; ++p) {
    EXPECT_EQ(mismatches(g, *result.members[p].output, {0, 100}, everyone_but(3)), 0u);
    EXPECT_EQ(result.members[p].traffic.messages_sent, 4u); // 2 parts out, its own part to 2 peers
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
  EXPECT_THROW(simulate_butterfly_allreduce(std::vector<std::vector<float>>(65, {1.0f}),
                                           std::vector<double>(65, 1.0), options),
               allreduce_error);
  allreduce_options bad = options;
  bad.part_shares = {1};
  EXPECT_THROW(simulate_butterfly_allreduce(two, {1.0, 1.0}, bad), allreduce_error);
  bad = options;
  bad.chunk_elements = 0;
  EXPECT_THROW(simulate_butterfly_allreduce(two, {1.0, 1.0}, bad), allreduce_error);
  failure_plan outside;
  outside.reducer_dies(2);
  EXPECT_THROW(simulate_butterfly_allreduce(two, {1.0, 1.0}, options, outside), allreduce_error);
  failure_plan outside_sender;
  outside_sender.sender_crashes_after_chunks(0, 5, 1);
  EXPECT_THROW(simulate_butterfly_allreduce(two, {1.0, 1.0}, options, outside_sender),
               allreduce_error);
}

} // namespace
} // namespace ddactor
