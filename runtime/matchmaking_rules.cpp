// Who leads the matchmaking of an epoch; see matchmaking_rules.hpp.
#include "runtime/matchmaking_rules.hpp"

#include <algorithm>
#include <span>
#include <utility>

#include "runtime/tensor_blob.hpp"

namespace ddactor {

bool reported_at(const epoch_reports& reports, const std::string& peer_id, int64_t epoch) {
  auto it = reports.epochs.find(peer_id);
  return it != reports.epochs.end() && (it->second == epoch || it->second + 1 == epoch);
}

bool awaited_in(const epoch_reports& reports, const std::string& peer_id, int64_t epoch) {
  return reported_at(reports, peer_id, epoch) || reports.epochs.count(peer_id) == 0;
}

bool declines_to_lead(const epoch_reports& reports, const std::string& peer_id, int64_t epoch) {
  auto it = reports.epochs.find(peer_id);
  return it != reports.epochs.end() && it->second == epoch &&
         reports.not_leading.count(peer_id) > 0;
}

bool leader_candidate(const epoch_reports& reports, const std::string& peer_id, int64_t epoch) {
  return awaited_in(reports, peer_id, epoch) && !declines_to_lead(reports, peer_id, epoch);
}

bool leads_instead(const epoch_reports& reports, const std::string& peer_id, int64_t epoch) {
  return reported_at(reports, peer_id, epoch) && !declines_to_lead(reports, peer_id, epoch);
}

bool swarm_past(const epoch_reports& reports, const std::string& self_id, int64_t epoch) {
  for (const auto& [id, reported] : reports.epochs)
    if (id != self_id && reported > epoch)
      return true;
  return false;
}

namespace {

uint64_t leader_rank(const std::string& id, int64_t epoch) {
  const std::string text = std::to_string(epoch) + ":" + id;
  return blob_checksum(std::span<const char>(text.data(), text.size()));
}

} // namespace

std::vector<std::string> leader_order(std::vector<std::string> ids, int64_t epoch) {
  std::vector<std::pair<uint64_t, std::string>> ranked;
  for (auto& id : ids)
    ranked.emplace_back(leader_rank(id, epoch), std::move(id));
  std::sort(ranked.begin(), ranked.end());
  std::vector<std::string> order;
  for (auto& [rank, id] : ranked)
    order.push_back(std::move(id));
  return order;
}

std::string next_leader(const epoch_reports& reports, const std::vector<std::string>& member_ids,
                        int64_t epoch, const std::set<std::string>& failed,
                        const std::string& leading_here) {
  if (!leading_here.empty() && failed.count(leading_here) == 0)
    return leading_here;
  for (const auto& id : leader_order(member_ids, epoch))
    if (failed.count(id) == 0 && leader_candidate(reports, id, epoch))
      return id;
  return {};
}

} // namespace ddactor
