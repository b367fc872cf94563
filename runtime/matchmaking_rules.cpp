// Who leads the matchmaking of an epoch; see matchmaking_rules.hpp.
#include "runtime/matchmaking_rules.hpp"

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

std::string next_leader(const epoch_reports& reports, const std::vector<std::string>& member_ids,
                        int64_t epoch, const std::set<std::string>& failed) {
  for (const auto& id : member_ids)
    if (failed.count(id) == 0 && leader_candidate(reports, id, epoch))
      return id;
  return {};
}

} // namespace ddactor
