// Quorums of peers vouching for a shared state; see state_quorum.hpp.
#include "runtime/state_quorum.hpp"

#include <algorithm>
#include <functional>

namespace ddactor {

std::size_t required_vouchers(std::size_t configured, std::size_t other_peers) noexcept {
  return std::max<std::size_t>(1, std::min(configured, other_peers));
}

vouched_states vouch(const std::vector<state_claim>& claims, std::size_t required) {
  vouched_states out;
  out.required = std::max<std::size_t>(1, required);
  std::map<std::pair<int64_t, uint64_t>, std::set<std::string>> vouchers;
  std::map<std::string, int64_t> highest;
  for (const auto& claim : claims) {
    if (claim.digest != 0)
      vouchers[{claim.epoch, claim.digest}].insert(claim.peer_id);
    auto [it, fresh] = highest.emplace(claim.peer_id, claim.epoch);
    if (!fresh)
      it->second = std::max(it->second, claim.epoch);
  }
  for (const auto& [state, peers] : vouchers)
    if (peers.size() >= out.required)
      out.digests[state.first].insert(state.second);
  if (highest.size() >= out.required) {
    std::vector<int64_t> epochs;
    for (const auto& [peer, epoch] : highest)
      epochs.push_back(epoch);
    std::sort(epochs.begin(), epochs.end(), std::greater<>());
    out.quorum_epoch = epochs[out.required - 1];
  }
  return out;
}

bool may_take(const vouched_states& vouched, int64_t epoch, uint64_t digest) {
  if (digest == 0)
    return vouched.quorum_epoch && epoch <= *vouched.quorum_epoch;
  auto it = vouched.digests.find(epoch);
  return it != vouched.digests.end() && it->second.contains(digest);
}

} // namespace ddactor
