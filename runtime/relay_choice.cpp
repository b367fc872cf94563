#include "runtime/relay_choice.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

namespace ddactor {
namespace {

// Rates within a factor of 1.25 of each other share a band (log base 1.25); unknown rates sort
// after every known one.
double rate_band(double bytes_per_second) {
  if (!(bytes_per_second > 0) || !std::isfinite(bytes_per_second))
    return -std::numeric_limits<double>::infinity();
  return std::floor(std::log(bytes_per_second) / std::log(1.25));
}

} // namespace

std::vector<std::string> rank_relay_candidates(std::vector<relay_candidate> candidates) {
  const auto unknown_last = [](std::chrono::microseconds t) {
    return t.count() > 0 ? t : std::chrono::microseconds::max();
  };
  std::stable_sort(candidates.begin(), candidates.end(),
                   [&](const relay_candidate& a, const relay_candidate& b) {
                     const double band_a = rate_band(a.link_rate);
                     const double band_b = rate_band(b.link_rate);
                     if (band_a != band_b)
                       return band_a > band_b;
                     return unknown_last(a.round_trip) < unknown_last(b.round_trip);
                   });
  std::vector<std::string> addresses;
  for (auto& candidate : candidates)
    addresses.push_back(std::move(candidate.address));
  return addresses;
}

} // namespace ddactor
