#pragma once
// Which reachable peers an unreachable one asks to relay for it, in order. A relay carries both
// directions of every circuit through it, so its link rate bounds what the peers behind it can
// exchange: the fastest measured links first. Among equal or unknown rates, the nearest first
// (a relay adds its round trip to every circuit's path).
//
// Pure code: no actors, no clock.

#include <chrono>
#include <string>
#include <vector>

namespace ddactor {

struct relay_candidate {
  std::string address;  // host:port
  double link_rate = 0;  // bytes per second as its reports claim (0: not measured yet)
  std::chrono::microseconds round_trip{0};  // as this peer's link to it measured (0: unknown)
};

/// The candidates' addresses, best first: by link rate (known before unknown, in steps of a
/// quarter so that measurement noise does not reorder peers on equal links), then by round trip
/// (known before unknown), then as given.
std::vector<std::string> rank_relay_candidates(std::vector<relay_candidate> candidates);

} // namespace ddactor
