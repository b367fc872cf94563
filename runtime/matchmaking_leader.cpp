// The leader's side of matchmaking; see matchmaking_leader.hpp.
#include "runtime/matchmaking_leader.hpp"

#include <algorithm>
#include <cmath>

#include "runtime/allreduce/bandwidth_shares.hpp"
#include "runtime/peer_identity.hpp"
#include "runtime/swarm_messages.hpp"

namespace ddactor {

namespace {

// Epochs whose matchmaking is closed are remembered (to refuse late joins), this many.
constexpr std::size_t remembered_epochs = 64;

} // namespace

bool acceptable_round_request(const round_request& request, std::string_view swarm_id) noexcept {
  return is_valid_peer_id(request.peer_id) && request.swarm_id == swarm_id && request.epoch >= 0 && request.weight > 0 &&
         std::isfinite(request.weight) && request.length > 0 && request.group &&
         std::isfinite(request.link_rate) && request.link_rate >= 0;
}

matchmaking_leader::matchmaking_leader(std::string self_id, std::size_t group_size)
    : self_id_(std::move(self_id)), group_size_(std::max<std::size_t>(group_size, 1)) {}

std::size_t matchmaking_leader::participants(swarm_knowledge swarm, int64_t epoch) {
  std::size_t n = 0;
  for (const auto& id : swarm.member_ids)
    n += awaited_in(swarm.reports, id, epoch) ? 1 : 0;
  return std::max<std::size_t>(n, 1);
}

matchmaking_leader::answer matchmaking_leader::on_join(join request, swarm_knowledge swarm) {
  answer out;
  const auto epoch = request.epoch;
  if (closed_.count(epoch) > 0) {
    out.outcome = verdict::closed;
    out.detail = "matchmaking for epoch " + std::to_string(epoch) + " is closed";
    return out;
  }
  auto it = rounds_.find(epoch);
  if (it == rounds_.end()) {
    // A peer that is elsewhere itself (downloading the state, or a joiner whose report has not
    // reached the member yet), or that reached the epoch by a download, does not lead it.
    if (!leader_candidate(swarm.reports, self_id_, epoch)) {
      out.outcome = verdict::not_leader;
      out.detail = "this peer does not lead epoch " + std::to_string(epoch);
      return out;
    }
    // Views differ for a moment when a peer joins or catches up: a peer that knows a leader of
    // this epoch before it in the order sends the member on, unless it already leads this
    // epoch's round.
    for (const auto& id : leader_order(swarm.member_ids, epoch)) {
      if (id == self_id_)
        break;
      if (leads_instead(swarm.reports, id, epoch)) {
        out.outcome = verdict::not_leader;
        out.detail = id.substr(0, 8) + " leads this epoch";
        return out;
      }
    }
    it = rounds_.emplace(epoch, round{{}, request.length}).first;
    out.opened = true;
  } else if (it->second.length != request.length) {
    out.outcome = verdict::shape_mismatch;
    out.detail = "vector length differs from the other members'";
    return out;
  }
  auto& joined = it->second.joined;
  auto same = std::find_if(joined.begin(), joined.end(),
                           [&](const join& j) { return j.peer_id == request.peer_id; });
  if (same != joined.end())
    *same = std::move(request);  // a retry replaces the earlier join
  else
    joined.push_back(std::move(request));
  if (joined.size() >= participants(swarm, epoch))
    out.formed = close(epoch);
  return out;
}

std::vector<matchmaking_leader::group> matchmaking_leader::close(int64_t epoch) {
  std::vector<group> out;
  auto it = rounds_.find(epoch);
  if (it == rounds_.end())
    return out;
  auto joined = std::move(it->second.joined);
  rounds_.erase(it);
  closed_.insert(epoch);
  while (closed_.size() > remembered_epochs)
    closed_.erase(closed_.begin());
  std::sort(joined.begin(), joined.end(),
            [](const join& a, const join& b) { return a.peer_id < b.peer_id; });
  // Balanced groups of at most group_size: ceil(n / g) groups whose sizes differ by at most one.
  const std::size_t n = joined.size();
  const std::size_t groups = (n + group_size_ - 1) / group_size_;
  std::size_t begin = 0;
  for (std::size_t g = 0; g < groups; ++g) {
    const std::size_t size = n / groups + (g < n % groups ? 1 : 0);
    group formed;
    formed.epoch = epoch;
    std::vector<double> rates;
    std::vector<bool> may_reduce;
    for (std::size_t i = begin; i < begin + size; ++i) {
      rates.push_back(joined[i].link_rate);
      may_reduce.push_back(joined[i].reachable);
      formed.members.push_back(std::move(joined[i]));
    }
    formed.shares = bandwidth_part_shares(rates, may_reduce);
    out.push_back(std::move(formed));
    begin += size;
  }
  return out;
}

std::vector<matchmaking_leader::group> matchmaking_leader::close_full_rounds(swarm_knowledge swarm) {
  std::vector<group> out;
  for (auto it = rounds_.begin(); it != rounds_.end();) {
    const auto epoch = it->first;
    const bool full = it->second.joined.size() >= participants(swarm, epoch);
    ++it;
    if (full)
      for (auto& g : close(epoch))
        out.push_back(std::move(g));
  }
  return out;
}

} // namespace ddactor
