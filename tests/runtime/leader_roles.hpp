#pragma once
// Peer ids for tests of matchmaking: the leader order of an epoch is a hash of the epoch and the
// id (runtime/matchmaking_rules.hpp), so tests name peers by role instead. role_ids(epoch,
// "abc") gives ids that sort the same way by id and in that epoch's leader order: role 'a'
// before 'b' before 'c' in both, so a test reads as if the lowest id led.
#include <algorithm>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/matchmaking_rules.hpp"

namespace ddactor::testing {

inline std::map<char, std::string> role_ids(int64_t epoch, std::string_view roles,
                                            std::size_t length = 32) {
  static constexpr char hex[] = "0123456789abcdef";
  std::map<char, std::string> out;
  std::string previous;  // the id of the role before, in leader order
  for (char role : roles) {
    // Of 256 ids starting with the role, the first in leader order that comes after `previous`.
    std::vector<std::string> candidates;
    for (int k = 0; k < 256; ++k)
      candidates.push_back(std::string(length - 2, role) + hex[k >> 4] + hex[k & 15]);
    if (!previous.empty())
      candidates.push_back(previous);
    auto order = leader_order(epoch, candidates);
    auto at = previous.empty() ? order.begin() : std::find(order.begin(), order.end(), previous) + 1;
    out[role] = *at;
    previous = *at;
  }
  return out;
}

} // namespace ddactor::testing
