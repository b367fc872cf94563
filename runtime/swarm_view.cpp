// The rules of a peer's swarm view and the validation of membership input; see swarm_view.hpp.
#include "runtime/swarm_view.hpp"

#include <algorithm>

#include "runtime/peer_identity.hpp"

namespace ddactor {

std::string_view to_string(rejection reason) noexcept {
  switch (reason) {
    case rejection::bad_peer_id: return "bad_peer_id";
    case rejection::bad_host: return "bad_host";
    case rejection::bad_port: return "bad_port";
    case rejection::bad_swarm_id: return "bad_swarm_id";
    case rejection::too_many_peers: return "too_many_peers";
    case rejection::missing_handle: return "missing_handle";
    case rejection::own_id: return "own_id";
    case rejection::stale_incarnation: return "stale_incarnation";
    case rejection::wrong_sender: return "wrong_sender";
    case rejection::bad_signature: return "bad_signature";
    case rejection::rate_limited: return "rate_limited";
  }
  return "unknown";
}

std::string_view to_string(removal_reason reason) noexcept {
  switch (reason) {
    case removal_reason::left: return "left";
    case removal_reason::died: return "died";
    case removal_reason::timeout: return "timeout";
    case removal_reason::restarted: return "restarted";
  }
  return "unknown";
}

namespace {

// Host names, IPv4 and bracketed or bare IPv6 addresses (with a %zone) use only these.
bool is_host_character(char c) noexcept {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '-' || c == '_' || c == ':' || c == '[' || c == ']' || c == '%';
}

// A host that opens a bracket closes it at its end ("[::1]"), as parse_peer_address reads it.
bool whole_brackets(std::string_view host) noexcept {
  return host.empty() || host.front() != '[' || (host.size() >= 3 && host.back() == ']');
}

// "host:port" of host characters and a port in 1..65535 of at most 5 digits (relays,
// alternates): what parse_peer_address reads.
bool plausible_address(std::string_view address) noexcept {
  const auto colon = address.rfind(':');
  if (colon == std::string_view::npos || colon == 0 || colon > max_host_length + 2 ||
      !std::all_of(address.begin(), address.end(), is_host_character))
    return false;
  // An IPv6 host carries a port only in brackets ("[::1]:7000"; "::1" is no address and port).
  const std::string_view host = address.substr(0, colon);
  if ((host.find(':') != std::string_view::npos && host.front() != '[') || !whole_brackets(host))
    return false;
  const std::string_view port = address.substr(colon + 1);
  uint32_t value = 0;
  for (char c : port)
    value = (c >= '0' && c <= '9' && value <= 65535) ? value * 10 + static_cast<uint32_t>(c - '0')
                                                     : 70000;
  return !port.empty() && port.size() <= 5 && value != 0 && value <= 65535;
}

} // namespace

std::optional<rejection> validate_peer_info(const peer_info& info) noexcept {
  if (!is_valid_peer_id(info.peer_id))
    return rejection::bad_peer_id;
  if (info.host.empty() || info.host.size() > max_host_length ||
      !std::all_of(info.host.begin(), info.host.end(), is_host_character) ||
      !whole_brackets(info.host))
    return rejection::bad_host;
  if (info.port == 0)
    return rejection::bad_port;
  if (info.swarm_id.size() > max_swarm_id_length ||
      !std::all_of(info.swarm_id.begin(), info.swarm_id.end(),
                   [](char c) { return c >= 0x20 && c < 0x7f; }))
    return rejection::bad_swarm_id;
  if (info.relays.size() > max_relays_per_peer ||
      info.alternates.size() > max_alternate_addresses)
    return rejection::bad_host;
  for (auto* list : {&info.relays, &info.alternates})
    for (auto& address : *list)
      if (!plausible_address(address))
        return rejection::bad_host;
  return std::nullopt;
}

std::optional<rejection> validate_peer_list(std::span<const peer_info> peers) noexcept {
  if (peers.size() > max_known_peers)
    return rejection::too_many_peers;
  for (auto& info : peers)
    if (auto reason = validate_peer_info(info))
      return reason;
  return std::nullopt;
}

bool handles_live_on(const swarm_member& member, const caf::node_id& node) {
  const auto elsewhere = [&](const auto& handle) { return handle && handle.node() != node; };
  return !elsewhere(member.membership) && !elsewhere(member.progress) &&
         !elsewhere(member.averager) && !elsewhere(member.state_server);
}

swarm_view::swarm_view(swarm_member self, swarm_view_timing timing)
  : self_(std::move(self)), timing_(timing) {}

void swarm_view::set_self(swarm_member self) { self_ = std::move(self); }

void swarm_view::bury(const peer_info& info, time_point now) {
  auto& stone = tombstones_[info.peer_id];
  stone.incarnation = std::max(stone.incarnation, info.incarnation);
  stone.expires = now + timing_.tombstone_ttl;
}

swarm_view::admit_result swarm_view::admit(const swarm_member& them, time_point now) {
  const auto& id = them.info.peer_id;
  if (id == self_.info.peer_id)
    return {admission::stale, std::nullopt};
  if (auto found = members_.find(id); found != members_.end()) {
    auto& entry = found->second;
    if (them.info.incarnation < entry.member.info.incarnation)
      return {admission::stale, std::nullopt};
    if (them.info.incarnation == entry.member.info.incarnation) {
      entry.member = them;
      entry.last_heard = now;
      entry.suspected = false;
      return {admission::refreshed, std::nullopt};
    }
    admit_result result{admission::replaced, std::move(entry.member)};
    bury(result.previous->info, now);
    entry = member_entry{them, now, false, {}};
    tombstones_.erase(id);
    if (auto candidate = candidates_.find(id);
        candidate != candidates_.end() && candidate->second.incarnation <= them.info.incarnation)
      candidates_.erase(candidate);
    return result;
  }
  // A newer incarnation of this id was seen before: this one is a zombie of the past.
  if (auto stone = tombstones_.find(id);
      stone != tombstones_.end() && stone->second.incarnation > them.info.incarnation &&
      stone->second.expires > now)
    return {admission::stale, std::nullopt};
  tombstones_.erase(id);
  if (auto candidate = candidates_.find(id);
      candidate != candidates_.end() && candidate->second.incarnation <= them.info.incarnation)
    candidates_.erase(candidate);
  members_.emplace(id, member_entry{them, now, false, {}});
  return {admission::joined, std::nullopt};
}

bool swarm_view::heard_from(std::string_view peer_id, uint64_t incarnation, time_point now) {
  auto found = members_.find(peer_id);
  if (found == members_.end() || found->second.member.info.incarnation != incarnation)
    return false;
  found->second.last_heard = now;
  return std::exchange(found->second.suspected, false);
}

std::optional<swarm_member> swarm_view::remove(std::string_view peer_id, time_point now) {
  auto found = members_.find(peer_id);
  if (found == members_.end())
    return std::nullopt;
  auto member = std::move(found->second.member);
  members_.erase(found);
  bury(member.info, now);
  return member;
}

std::vector<peer_info> swarm_view::learn(std::span<const peer_info> known, time_point now) {
  std::vector<peer_info> fresh;
  for (auto& info : known) {
    if (info.peer_id == self_.info.peer_id)
      continue;
    if (auto member = members_.find(info.peer_id);
        member != members_.end() && member->second.member.info.incarnation >= info.incarnation)
      continue;
    if (is_tombstoned(info.peer_id, info.incarnation, now))
      continue;
    auto candidate = candidates_.find(info.peer_id);
    if (candidate != candidates_.end()) {
      // Same incarnation, other details: it changed its relays (its old ones may be gone).
      if (candidate->second.incarnation > info.incarnation || candidate->second == info)
        continue;
      candidate->second = info;
    } else {
      candidates_.emplace(info.peer_id, info);
    }
    fresh.push_back(info);
  }
  return fresh;
}

void swarm_view::forget_candidate(std::string_view peer_id) {
  if (auto found = candidates_.find(peer_id); found != candidates_.end())
    candidates_.erase(found);
}

void swarm_view::forget_candidates_at(std::string_view address) {
  std::erase_if(candidates_, [&](const auto& entry) {
    const auto addresses = entry.second.addresses();
    return std::find(addresses.begin(), addresses.end(), address) != addresses.end();
  });
}

bool swarm_view::heard_of(std::string_view peer_id) const {
  return peer_id == self_.info.peer_id || members_.contains(peer_id) ||
         candidates_.contains(peer_id);
}

std::optional<std::size_t> swarm_view::split_merge_size(
  const peer_info& them, std::span<const peer_info> their_known) const {
  if (heard_of(them.peer_id))
    return std::nullopt;
  if (members_.empty())
    return std::nullopt;
  std::vector<std::string_view> unknown;
  for (auto& info : their_known) {
    if (info.peer_id == them.peer_id || heard_of(info.peer_id))
      continue;
    if (std::find(unknown.begin(), unknown.end(), info.peer_id) == unknown.end())
      unknown.push_back(info.peer_id);
  }
  if (unknown.empty())
    return std::nullopt;
  return unknown.size() + 1;
}

swarm_view::liveness_report swarm_view::check_liveness(time_point now) {
  liveness_report report;
  for (auto it = members_.begin(); it != members_.end();) {
    auto& entry = it->second;
    // A heartbeat crosses the path once, and a lost packet costs TCP about a round trip more:
    // the measured round trip widens both thresholds (a LAN's is ~0, a far home link's 0.6 s),
    // and so do the retransmission timeouts of a link that loses packets.
    auto silence = now - entry.last_heard - 2 * entry.round_trip - entry.loss_stall;
    if (silence >= timing_.remove_after) {
      bury(entry.member.info, now);
      report.timed_out.push_back(std::move(entry.member));
      it = members_.erase(it);
      continue;
    }
    if (silence >= timing_.suspect_after && !entry.suspected) {
      entry.suspected = true;
      report.suspected.push_back(entry.member.info);
    }
    ++it;
  }
  std::erase_if(tombstones_, [&](const auto& stone) { return stone.second.expires <= now; });
  return report;
}

void swarm_view::set_link_timing(std::string_view peer_id, std::chrono::microseconds round_trip,
                                 std::chrono::microseconds loss_stall) {
  auto found = members_.find(peer_id);
  if (found == members_.end())
    return;
  found->second.round_trip = std::clamp(round_trip, std::chrono::microseconds(0),
                                        std::chrono::microseconds(max_counted_round_trip));
  found->second.loss_stall = std::clamp(loss_stall, std::chrono::microseconds(0),
                                        std::chrono::microseconds(max_counted_loss_stall));
}

const swarm_member* swarm_view::find(std::string_view peer_id) const {
  auto found = members_.find(peer_id);
  return found == members_.end() ? nullptr : &found->second.member;
}

bool swarm_view::is_tombstoned(std::string_view peer_id, uint64_t incarnation,
                               time_point now) const {
  auto found = tombstones_.find(peer_id);
  return found != tombstones_.end() && found->second.expires > now &&
         found->second.incarnation >= incarnation;
}

bool swarm_view::is_suspected(std::string_view peer_id) const {
  auto found = members_.find(peer_id);
  return found != members_.end() && found->second.suspected;
}

std::optional<swarm_view::time_point> swarm_view::last_heard(std::string_view peer_id) const {
  auto found = members_.find(peer_id);
  if (found == members_.end())
    return std::nullopt;
  return found->second.last_heard;
}

std::vector<swarm_member> swarm_view::members() const {
  std::vector<swarm_member> all;
  all.reserve(members_.size() + 1);
  bool self_placed = false;
  for (auto& [id, entry] : members_) {
    if (!self_placed && self_.info.peer_id < id) {
      all.push_back(self_);
      self_placed = true;
    }
    all.push_back(entry.member);
  }
  if (!self_placed)
    all.push_back(self_);
  return all;
}

std::vector<peer_info> swarm_view::other_infos() const {
  std::vector<peer_info> infos;
  infos.reserve(members_.size());
  for (auto& [id, entry] : members_)
    infos.push_back(entry.member.info);
  return infos;
}

} // namespace ddactor
