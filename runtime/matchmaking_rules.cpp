// Who leads the matchmaking of an epoch; see matchmaking_rules.hpp.
#include "runtime/matchmaking_rules.hpp"

#include <sodium.h>

#include <algorithm>
#include <array>

namespace ddactor {

bool reported_at(const epoch_reports& reports, const std::string& peer_id, int64_t epoch) {
  auto it = reports.epochs.find(peer_id);
  return it != reports.epochs.end() && (it->second == epoch || it->second + 1 == epoch);
}

bool awaited_in(const epoch_reports& reports, const std::string& peer_id, int64_t epoch) {
  return reported_at(reports, peer_id, epoch) || reports.epochs.count(peer_id) == 0;
}

bool leader_candidate(const epoch_reports& reports, const std::string& peer_id, int64_t epoch) {
  return awaited_in(reports, peer_id, epoch) && reports.not_leading.count(peer_id) == 0;
}

bool leads_instead(const epoch_reports& reports, const std::string& peer_id, int64_t epoch) {
  return reported_at(reports, peer_id, epoch) && reports.not_leading.count(peer_id) == 0;
}

bool swarm_past(const epoch_reports& reports, const std::string& self_id, int64_t epoch) {
  for (const auto& [id, reported] : reports.epochs)
    if (id != self_id && reported > epoch)
      return true;
  return false;
}

std::vector<std::string> leader_order(int64_t epoch, std::vector<std::string> ids) {
  std::vector<std::pair<uint64_t, std::string>> ranked;
  ranked.reserve(ids.size());
  for (auto& id : ids) {
    std::array<uint8_t, 8> epoch_bytes{};
    for (int i = 0; i < 8; ++i)
      epoch_bytes[i] = static_cast<uint8_t>(static_cast<uint64_t>(epoch) >> (8 * i));
    crypto_generichash_state state;
    crypto_generichash_init(&state, nullptr, 0, 8);
    crypto_generichash_update(&state, epoch_bytes.data(), epoch_bytes.size());
    crypto_generichash_update(&state, reinterpret_cast<const uint8_t*>(id.data()), id.size());
    std::array<uint8_t, 8> digest{};
    crypto_generichash_final(&state, digest.data(), digest.size());
    uint64_t rank = 0;
    for (auto b : digest)
      rank = (rank << 8) | b;
    ranked.emplace_back(rank, std::move(id));
  }
  std::sort(ranked.begin(), ranked.end());
  std::vector<std::string> out;
  out.reserve(ranked.size());
  for (auto& [rank, id] : ranked)
    out.push_back(std::move(id));
  return out;
}

std::string next_leader(const epoch_reports& reports, const std::vector<std::string>& member_ids,
                        int64_t epoch, const std::set<std::string>& failed) {
  for (const auto& id : leader_order(epoch, member_ids))
    if (failed.count(id) == 0 && leader_candidate(reports, id, epoch))
      return id;
  return {};
}

} // namespace ddactor
