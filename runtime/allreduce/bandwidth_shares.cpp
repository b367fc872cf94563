// Water-filling of a group's vector by link rates; see bandwidth_shares.hpp.
#include "runtime/allreduce/bandwidth_shares.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace ddactor {

namespace {

constexpr double largest_share = 1099511627776.0;  // 2^40

bool known(double rate) { return std::isfinite(rate) && rate > 0; }

} // namespace

std::vector<std::uint64_t> bandwidth_part_shares(std::span<const double> rates) {
  return bandwidth_part_shares(rates, std::vector<bool>(rates.size(), true));
}

std::vector<std::uint64_t> bandwidth_part_shares(std::span<const double> rates,
                                                 const std::vector<bool>& may_reduce) {
  const std::size_t n = rates.size();
  const auto reducers = static_cast<std::size_t>(std::count(may_reduce.begin(), may_reduce.end(), true));
  if (reducers == 0 || may_reduce.size() != n)  // nobody can be reached: every link is relayed
    return bandwidth_part_shares(rates);
  std::vector<double> known_rates;
  for (double r : rates)
    if (known(r))
      known_rates.push_back(r);
  if (n < 3 || known_rates.empty()) {
    std::vector<std::uint64_t> equal(n, 0);
    for (std::size_t i = 0; i < n; ++i)
      equal[i] = may_reduce[i] ? 1 : 0;
    return equal;
  }
  std::sort(known_rates.begin(), known_rates.end());
  const double median = known_rates[known_rates.size() / 2];
  std::vector<double> b(n);
  for (std::size_t i = 0; i < n; ++i)
    b[i] = known(rates[i]) ? rates[i] : median;

  // The k fastest members that may reduce do: the largest k whose slowest member still has
  // T b > L, where T = (n - 2 + k) L / (sum of their rates). In units of L:
  // (n - 2 + k) b_k > sum_k.
  std::vector<double> descending;
  for (std::size_t i = 0; i < n; ++i)
    if (may_reduce[i])
      descending.push_back(b[i]);
  std::sort(descending.begin(), descending.end(), std::greater<>());
  std::size_t k = 1;
  double sum_k = descending[0];
  double sum = 0;
  for (std::size_t j = 0; j < descending.size(); ++j) {
    sum += descending[j];
    if (static_cast<double>(n - 2 + j + 1) * descending[j] > sum) {
      k = j + 1;
      sum_k = sum;
    }
  }
  // p_i is proportional to (n - 2 + k) b_i - sum_k for the members that reduce.
  const double factor = static_cast<double>(n - 2 + k);
  std::vector<double> weights(n, 0.0);
  double heaviest = 0;
  for (std::size_t i = 0; i < n; ++i) {
    if (may_reduce[i])
      weights[i] = std::max(0.0, factor * b[i] - sum_k);
    heaviest = std::max(heaviest, weights[i]);
  }
  std::vector<std::uint64_t> shares(n, 0);
  for (std::size_t i = 0; i < n; ++i)
    shares[i] = static_cast<std::uint64_t>(std::llround(weights[i] / heaviest * largest_share));
  return shares;
}

std::vector<part_range> partition_by_shares(std::size_t length,
                                            std::span<const std::uint64_t> shares) {
  if (std::all_of(shares.begin(), shares.end(), [](std::uint64_t s) { return s == 0; }))
    return butterfly_partition(length, shares.size());
  // A leader's shares (at most 2^40) are exact as doubles; any uint64 converts the same way on
  // every machine, and butterfly_partition works on the doubles' exact binary values.
  std::vector<double> weights(shares.begin(), shares.end());
  return butterfly_partition(length, weights);
}

double slowest_transfer_seconds(std::span<const part_range> parts, std::span<const double> rates,
                                double bytes_per_element) {
  if (parts.size() != rates.size())
    throw allreduce_error("slowest_transfer_seconds: one rate per part");
  std::size_t length = 0;
  for (const auto& part : parts)
    length += part.size();
  const double n = static_cast<double>(parts.size());
  double slowest = 0;
  for (std::size_t i = 0; i < parts.size(); ++i) {
    const double values =
      parts.size() < 2 ? 0.0 : static_cast<double>(length) + (n - 2) * static_cast<double>(parts[i].size());
    slowest = std::max(slowest, values * bytes_per_element / rates[i]);
  }
  return slowest;
}

} // namespace ddactor
