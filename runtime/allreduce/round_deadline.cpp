#include "runtime/allreduce/round_deadline.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

#include "runtime/allreduce/bandwidth_shares.hpp"

namespace ddactor {
namespace {

constexpr double bytes_per_value = 4.0;
constexpr double safety_factor = 3.0;
constexpr double round_trips_seconds = 2.0;

} // namespace

std::chrono::milliseconds round_deadline(uint64_t length, std::span<const uint64_t> shares,
                                         std::span<const double> rates,
                                         std::chrono::milliseconds floor) {
  if (shares.size() != rates.size() || shares.empty() || length == 0)
    return floor;
  double slowest_known = 0;
  for (double rate : rates)
    if (std::isfinite(rate) && rate > 0)
      slowest_known = slowest_known == 0 ? rate : std::min(slowest_known, rate);
  if (slowest_known == 0)
    return floor;
  std::vector<double> known(rates.begin(), rates.end());
  for (double& rate : known)
    if (!std::isfinite(rate) || rate <= 0)
      rate = slowest_known;
  const auto parts = partition_by_shares(static_cast<std::size_t>(length), shares);
  const double bound = slowest_transfer_seconds(parts, known, bytes_per_value);
  const double seconds = safety_factor * bound + round_trips_seconds;
  const auto ceiling = floor * max_round_deadline_stretch;
  if (!(seconds * 1000.0 < static_cast<double>(ceiling.count())))
    return ceiling;
  return std::max(floor, std::chrono::milliseconds(static_cast<int64_t>(std::ceil(seconds * 1000))));
}

std::chrono::milliseconds accepted_round_deadline(std::chrono::milliseconds assigned,
                                                  std::chrono::milliseconds floor) {
  return std::clamp(assigned, floor, floor * max_round_deadline_stretch);
}

} // namespace ddactor
