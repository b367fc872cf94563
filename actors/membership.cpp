// The membership actor: connections, timers, logs and metrics around the swarm view; see
// membership.hpp for its messages and a member's lifecycle, runtime/swarm_view.hpp for the rules.
#include "actors/membership.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <map>
#include <random>
#include <set>

#include "caf/io/middleman.hpp"

#include "actors/local_control.hpp"
#include "monitoring/ddactor_metrics.hpp"
#include "monitoring/swarm_status.hpp"
#include "runtime/errors.hpp"
#include "runtime/message_types.hpp"
#include "runtime/peer_identity.hpp"
#include "runtime/relay_choice.hpp"
#include "runtime/secure/hello_proof.hpp"
#include "runtime/secure/link_gateway.hpp"
#include "runtime/sender_rate_limit.hpp"
#include "runtime/swarm_view.hpp"

namespace ddactor {

namespace {

using clock = swarm_view::clock;

// Rejections are logged one by one up to this many, then one in rejection_log_every, so that a
// flood of garbage cannot flood the log too.
constexpr uint64_t rejection_log_burst = 20;
constexpr uint64_t rejection_log_every = 1000;

struct initial_peer {
  std::string host;
  uint16_t port = 0;
  std::string address;
  /// The peer there said goodbye: it is not dialed any more (a clean shutdown, not a crash).
  bool gone = false;
};

// Failed dials of one address wait longer each time, up to this.
constexpr std::chrono::seconds max_dial_backoff{60};
// How often a dial looks whether the gateway's link is up.
constexpr std::chrono::milliseconds tunnel_poll_interval{10};

struct membership_state {
  membership_options options;
  std::optional<swarm_view> view;
  /// Hellos and gossip per sending node (remote ones): set from gossip_interval at start.
  std::optional<sender_rate_limit> remote_rate;
  std::vector<initial_peer> initial_peers;
  bool published = false;
  std::vector<caf::response_promise> port_waiters;
  /// Addresses being dialed (connect or hello in flight).
  std::set<std::string> dials_in_flight;
  /// Addresses not to dial again before the time given (a dial there failed).
  std::map<std::string, clock::time_point> dial_cooldown;
  /// Failed dials in a row, per address: the next one waits bootstrap_retry x 2^(n-1).
  std::map<std::string, int> dial_failures;
  /// Addresses that turned out to be this peer itself.
  std::set<std::string> own_addresses;
  /// Dials waiting for the gateway's link, by address: given up after the time given.
  std::map<std::string, clock::time_point> tunnel_deadlines;
  /// Relays whose reservation was lost: not asked again before the time given.
  std::map<std::string, clock::time_point> relay_cooldown;
  /// Members' link rates as their reports claim them (bytes per second), for relay choice.
  std::map<std::string, double, std::less<>> link_rates;
  /// Unreachable members whose link through a relay broke, by id: dialed again through their
  /// relays each interval (not after their tombstone) until they are back or the time given.
  std::map<std::string, std::pair<peer_info, clock::time_point>> relayed_redials;
  std::vector<view_subscriber> subscribers;
  uint64_t ticks = 0;
  uint64_t rejections = 0;
  std::mt19937_64 random{std::random_device{}()};
  swarm_metrics metrics{global_metrics()};
  static inline const char* name = "membership";
};

using membership_pointer = membership_actor::stateful_pointer<membership_state>;

std::string me(membership_pointer self) {
  return short_peer_id(self->state.view->self().info.peer_id);
}

std::string describe(const peer_info& info) {
  return short_peer_id(info.peer_id) + " (" + info.address() + ")";
}

// The status board learns the view: this peer, and each member's address, suspicion and when
// it was last heard from.
void report_to_board(membership_pointer self) {
  auto& st = self->state;
  if (!st.options.status_board)
    return;
  const auto& own = st.view->self().info;
  st.options.status_board->set_self(own.peer_id, own.swarm_id, own.address());
  std::vector<swarm_status_board::member_fact> members;
  for (const auto& member : st.view->members())
    if (member.info.peer_id != own.peer_id)
      members.push_back({member.info.peer_id, member.info.address(), member.info.swarm_id,
                         st.view->is_suspected(member.info.peer_id),
                         st.view->last_heard(member.info.peer_id)});
  st.options.status_board->set_members(std::move(members));
}

void publish_view(membership_pointer self) {
  auto& st = self->state;
  report_to_board(self);
  st.metrics.peers.set(static_cast<double>(st.view->size()));
  if (st.subscribers.empty())
    return;
  auto members = st.view->members();
  for (auto& subscriber : st.subscribers)
    self->send(subscriber, view_atom_v, members);
}

void reject(membership_pointer self, rejection reason, const std::string& what) {
  auto& st = self->state;
  st.metrics.rejected.with({std::string(to_string(reason))}).inc();
  auto count = ++st.rejections;
  if (count <= rejection_log_burst || count % rejection_log_every == 0)
    spdlog::warn("membership {}: rejected {}: {} ({} rejected so far)", me(self), what,
                 to_string(reason), count);
}

// A remote node sending more hellos and gossip than a peer ever does (each hello costs a
// signature check): the excess is refused before any work.
bool over_rate(membership_pointer self) {
  auto& st = self->state;
  auto sender = self->current_sender();
  if (!sender || sender->node() == self->node() || !st.remote_rate)
    return false;
  return !st.remote_rate->allow(caf::to_string(sender->node()), clock::now());
}

caf::error rejection_error(rejection reason) {
  return make_error(errc::invalid_message, "membership: " + std::string(to_string(reason)));
}

void forget_member(membership_pointer self, const swarm_member& member, removal_reason reason,
                   const std::string& detail) {
  auto& st = self->state;
  if (member.membership)
    self->demonitor(member.membership.address());
  st.link_rates.erase(member.info.peer_id);
  st.metrics.left.with({std::string(to_string(reason))}).inc();
  auto line = detail.empty() ? std::string{} : " (" + detail + ")";
  switch (reason) {
    case removal_reason::left:
      spdlog::info("membership {}: peer {} left{}; {} peers in view", me(self),
                   describe(member.info), line, st.view->size());
      // It shut down cleanly: if it was a bootstrap address, that address is not tried again.
      for (auto& peer : st.initial_peers)
        if (peer.address == member.info.address())
          peer.gone = true;
      break;
    case removal_reason::died:
      spdlog::warn("membership {}: peer {} died{}; {} peers in view", me(self),
                   describe(member.info), line, st.view->size());
      break;
    case removal_reason::timeout:
      spdlog::warn("membership {}: peer {} removed after {} ms of silence; {} peers in view",
                   me(self), describe(member.info), st.options.remove_after.count(),
                   st.view->size());
      break;
    case removal_reason::restarted:
      spdlog::info("membership {}: peer {} restarted (incarnation {} replaced){}", me(self),
                   describe(member.info), member.info.incarnation, line);
      break;
  }
}

// A peer we exchanged hellos with, in either direction: into the view (or refreshed there).
swarm_view::admission admit_member(membership_pointer self, const swarm_member& them) {
  auto& st = self->state;
  auto result = st.view->admit(them, clock::now());
  switch (result.outcome) {
    case swarm_view::admission::joined:
      self->monitor(them.membership);
      st.metrics.joined.inc();
      spdlog::info("membership {}: peer {} joined (swarm '{}', incarnation {}); {} peers in view",
                   me(self), describe(them.info), them.info.swarm_id, them.info.incarnation,
                   st.view->size());
      break;
    case swarm_view::admission::replaced:
      forget_member(self, *result.previous, removal_reason::restarted,
                    "now incarnation " + std::to_string(them.info.incarnation));
      self->monitor(them.membership);
      st.metrics.joined.inc();
      break;
    case swarm_view::admission::refreshed:
      break;
    case swarm_view::admission::stale:
      spdlog::debug("membership {}: ignored stale peer {} incarnation {}", me(self),
                    describe(them.info), them.info.incarnation);
      break;
  }
  return result.outcome;
}

void dial(membership_pointer self, const std::string& host, uint16_t port, bool bootstrap,
          const std::string& via_relay_to = {});
void await_tunnel(membership_pointer self, const std::string& address, uint16_t tunnel,
                  bool bootstrap);
void connect_caf(membership_pointer self, const std::string& address, const std::string& dial_host,
                 uint16_t dial_port, bool bootstrap);

// This peer as its hellos and replies carry it: signed when it has a key (hello_proof.hpp).
swarm_member signed_self(membership_pointer self) {
  auto own = self->state.view->self();
  if (self->state.options.key)
    sign_hello(own, *self->state.options.key, caf::to_string(self->node()));
  return own;
}

// Whether this peer opens the link to `other` (see membership.hpp): any peer dials a reachable
// one; an unreachable one is dialed only by an unreachable peer with a lower id, through a relay.
bool opens_link_to(const peer_info& own, const peer_info& other) {
  if (other.reachable)
    return true;
  return !own.reachable && own.peer_id < other.peer_id && !other.relays.empty();
}

std::string relayed_address(const std::string& peer_id, const std::string& relay) {
  return short_peer_id(peer_id) + " via " + relay;
}

// The relay to reach `other` through: of its relays not waiting after a failed dial, the first
// that is a member of our view (so probably alive), else the first.
std::pair<std::string, uint16_t> relay_for(membership_pointer self, const peer_info& other) {
  auto& st = self->state;
  std::set<std::string> alive;
  for (auto& member : st.view->members())
    for (auto& address : member.info.addresses())
      alive.insert(address);
  const auto now = clock::now();
  std::optional<std::string> first_alive, first;
  for (auto& relay : other.relays) {
    auto cooldown = st.dial_cooldown.find(relayed_address(other.peer_id, relay));
    if (cooldown != st.dial_cooldown.end() && cooldown->second > now)
      continue;
    if (!first)
      first = relay;
    if (!first_alive && alive.contains(relay))
      first_alive = relay;
  }
  const auto chosen = first_alive ? first_alive : first;
  auto parsed = chosen ? parse_peer_address(*chosen) : std::nullopt;
  return parsed ? *parsed : std::pair<std::string, uint16_t>{};
}

// The first of `info`'s addresses (host:port, then its alternates) not waiting after a failed
// dial; nullopt while one is being dialed or when all wait.
std::optional<std::string> address_to_dial(const membership_state& st, const peer_info& info) {
  const auto addresses = info.addresses();
  for (auto& address : addresses)
    if (st.dials_in_flight.contains(address))
      return std::nullopt;
  const auto now = clock::now();
  for (auto& address : addresses) {
    auto cooldown = st.dial_cooldown.find(address);
    if (cooldown == st.dial_cooldown.end() || cooldown->second <= now)
      return address;
  }
  return std::nullopt;
}

void dial_member(membership_pointer self, const peer_info& info) {
  auto& st = self->state;
  if (!opens_link_to(st.view->self().info, info))
    return;  // it dials us
  if (info.reachable) {
    auto address = address_to_dial(st, info);
    if (auto parsed = address ? parse_peer_address(*address) : std::nullopt)
      dial(self, parsed->first, parsed->second, false);
    return;
  }
  if (!st.options.gateway)
    return;
  auto [host, port] = relay_for(self, info);
  if (port != 0)
    dial(self, host, port, false, info.peer_id);
}

void dial_candidates(membership_pointer self, const std::vector<peer_info>& peers) {
  for (auto& info : peers)
    dial_member(self, info);
}

void dial_failed(membership_pointer self, const std::string& address, bool bootstrap,
                 const std::string& why) {
  auto& st = self->state;
  st.dials_in_flight.erase(address);
  const int failures = ++st.dial_failures[address];
  const auto backoff = std::min<std::chrono::milliseconds>(
    st.options.bootstrap_retry * (1 << std::min(failures - 1, 16)), max_dial_backoff);
  st.dial_cooldown[address] = clock::now() + backoff;
  // A candidate with another address to try is dialed there at once (its IPv6 address where
  // IPv4 failed); the others are forgotten.
  std::vector<peer_info> fall_back;
  std::vector<std::string> forgotten;
  for (auto& [id, info] : st.view->candidates()) {
    const auto addresses = info.addresses();
    if (std::find(addresses.begin(), addresses.end(), address) == addresses.end())
      continue;
    if (address_to_dial(st, info))
      fall_back.push_back(info);
    else
      forgotten.push_back(id);
  }
  for (auto& id : forgotten)
    st.view->forget_candidate(id);
  // Said when it starts failing, then less and less often (1st, 2nd, 4th, 8th ... failure).
  const bool worth_saying = (failures & (failures - 1)) == 0;
  if (bootstrap && st.view->others() == 0 && worth_saying)
    spdlog::warn("membership {}: cannot join through {}: {}; retrying in {} s ({} failed "
                 "attempts)",
                 me(self), address, why,
                 std::chrono::duration_cast<std::chrono::seconds>(backoff).count(), failures);
  else
    spdlog::debug("membership {}: cannot reach {}: {}", me(self), address, why);
  for (auto& info : fall_back) {
    spdlog::debug("membership {}: trying {} at its next address", me(self), describe(info));
    dial_member(self, info);
  }
}

// The reply to our hello: the peer itself and the peers it knows.
void on_hello_reply(membership_pointer self, const std::string& address,
                    membership_remote reached, swarm_member them, std::vector<peer_info> known) {
  auto& st = self->state;
  st.dials_in_flight.erase(address);
  st.dial_failures.erase(address);
  if (auto reason = validate_peer_info(them.info)) {
    reject(self, *reason, "hello reply from " + address);
    st.view->forget_candidates_at(address);
    return;
  }
  if (auto reason = validate_peer_list(known)) {
    reject(self, *reason, "known list from " + address);
    st.view->forget_candidates_at(address);
    return;
  }
  if (them.info.peer_id == st.view->self().info.peer_id) {
    reject(self, rejection::own_id, "hello reply from " + address);
    st.own_addresses.insert(address);
    return;
  }
  // The handle we reached is the one to watch, whatever the reply claims.
  them.membership = reached;
  if (!handles_live_on(them, reached.node())) {
    reject(self, rejection::wrong_sender, "hello reply from " + address);
    return;
  }
  if (st.options.require_proof && !hello_proven(them, caf::to_string(reached.node()))) {
    reject(self, rejection::bad_signature, "hello reply from " + address);
    return;
  }
  auto merged = st.view->split_merge_size(them.info, known);
  auto outcome = admit_member(self, them);
  if (outcome == swarm_view::admission::stale)
    return;
  if (outcome == swarm_view::admission::joined && address != them.info.address() &&
      st.dial_cooldown.contains(them.info.address()))
    spdlog::info("membership {}: reached {} at {}, its address {} did not answer", me(self),
                 short_peer_id(them.info.peer_id), address, them.info.address());
  // Other candidates at that address were older tenants of it.
  st.view->forget_candidates_at(address);
  if (merged) {
    st.metrics.splits.inc();
    spdlog::warn("membership {}: swarm split detected: merged {} peers through {}", me(self),
                 *merged, describe(them.info));
  }
  auto fresh = st.view->learn(known, clock::now());
  // A refresh may carry new handles of that peer (one of its actors restarted).
  publish_view(self);
  dial_candidates(self, fresh);
}

void dial(membership_pointer self, const std::string& host, uint16_t port, bool bootstrap,
          const std::string& via_relay_to) {
  auto& st = self->state;
  if (!st.published)
    return;
  auto address = format_peer_address(host, port);
  if (!via_relay_to.empty())
    address = relayed_address(via_relay_to, address);
  if (st.dials_in_flight.contains(address) || st.own_addresses.contains(address))
    return;
  auto now = clock::now();
  if (auto cooldown = st.dial_cooldown.find(address); cooldown != st.dial_cooldown.end()) {
    if (cooldown->second > now)
      return;
    st.dial_cooldown.erase(cooldown);
  }
  st.dials_in_flight.insert(address);
  // Through the gateway, CAF dials a one-shot loopback port that carries the link to the peer,
  // once the gateway's link is up (await_tunnel).
  if (st.options.gateway) {
    std::string error;
    auto tunnel = via_relay_to.empty()
                    ? st.options.gateway->open_tunnel(host, port, error)
                    : st.options.gateway->open_relayed_tunnel(host, port, via_relay_to, error);
    if (!tunnel) {
      dial_failed(self, address, bootstrap, error);
      return;
    }
    st.tunnel_deadlines[address] = clock::now() + st.options.connect_timeout;
    await_tunnel(self, address, *tunnel, bootstrap);
    return;
  }
  connect_caf(self, address, host, port, bootstrap);
}

// The gateway dials first; CAF connects to the tunnel once its link is up.
void await_tunnel(membership_pointer self, const std::string& address, uint16_t tunnel,
                  bool bootstrap) {
  auto& st = self->state;
  std::string why;
  switch (st.options.gateway->tunnel_state(tunnel, why)) {
    case link_gateway::tunnel::ready:
      st.tunnel_deadlines.erase(address);
      connect_caf(self, address, "127.0.0.1", tunnel, bootstrap);
      return;
    case link_gateway::tunnel::failed:
      st.tunnel_deadlines.erase(address);
      dial_failed(self, address, bootstrap, why);
      return;
    case link_gateway::tunnel::dialing: break;
  }
  if (clock::now() > st.tunnel_deadlines[address]) {
    st.tunnel_deadlines.erase(address);
    dial_failed(self, address, bootstrap, "no link within network.connect_timeout");
    return;
  }
  self->delayed_send(self, tunnel_poll_interval, retry_atom_v, address, tunnel, bootstrap);
}

void connect_caf(membership_pointer self, const std::string& address, const std::string& dial_host,
                 uint16_t dial_port, bool bootstrap) {
  auto& st = self->state;
  auto timeout = st.options.connect_timeout;
  self
    ->request(self->system().middleman().actor_handle(), timeout, caf::connect_atom::value,
              dial_host, dial_port)
    .then(
      [=](const caf::node_id&, caf::strong_actor_ptr& published, const std::set<std::string>&) {
        auto& st = self->state;
        if (!published) {
          dial_failed(self, address, bootstrap, "no actor is published there");
          return;
        }
        auto reached = caf::actor_cast<membership_remote>(published);
        if (reached.address() == self->address()) {
          st.dials_in_flight.erase(address);
          st.own_addresses.insert(address);
          st.view->forget_candidates_at(address);
          spdlog::debug("membership {}: {} is this peer itself", me(self), address);
          return;
        }
        for (auto& member : st.view->members())
          if (member.membership == reached) {
            // Already a member under another address (e.g. "localhost" vs "127.0.0.1"); any
            // candidate dialed here was an older tenant of this address.
            st.dials_in_flight.erase(address);
            st.view->forget_candidates_at(address);
            return;
          }
        // Only a bootstrap dial asks for the known list: a peer dialed because gossip named it
        // has nothing to teach that gossip does not (1000 peers dialing each other would
        // otherwise trade a million 1000-entry lists).
        self->request(reached, timeout, hello_atom_v, signed_self(self), bootstrap)
          .then(
            [=](swarm_member& them, std::vector<peer_info>& known) {
              on_hello_reply(self, address, reached, std::move(them), std::move(known));
            },
            [=](caf::error& err) {
              dial_failed(self, address, bootstrap, "hello: " + self->system().render(err));
            });
      },
      [=](caf::error& err) {
        dial_failed(self, address, bootstrap, self->system().render(err));
      });
}

void dial_initial_peers(membership_pointer self, bool only_missing) {
  auto& st = self->state;
  std::set<std::string> member_addresses;
  if (only_missing)
    for (auto& member : st.view->members())
      for (auto& address : member.info.addresses())
        member_addresses.insert(address);
  for (auto& peer : st.initial_peers)
    if (!peer.gone && !member_addresses.contains(peer.address))
      dial(self, peer.host, peer.port, true);
}

// This peer's relays changed: every member hears its new details (a signed hello), and the
// unreachable ones that dial it learn where to (their gossip carries the new details on).
void announce_again(membership_pointer self) {
  auto& st = self->state;
  auto own = signed_self(self);
  for (auto& member : st.view->members())
    if (member.info.peer_id != own.info.peer_id && member.membership)
      self->request(member.membership, st.options.connect_timeout, hello_atom_v, own, false)
        .then([](swarm_member&, std::vector<peer_info>&) {},
              [](caf::error&) {});  // a member that is gone is noticed by its monitor
}

// An unreachable peer keeps relays_wanted reservations: lost ones are released and replaced
// (initial peers that answered its probe first, then reachable members), and the relays it
// announces are the active ones.
void keep_relays(membership_pointer self) {
  auto& st = self->state;
  auto& gateway = st.options.gateway;
  if (!gateway || st.view->self().info.reachable)
    return;
  const auto now = clock::now();
  std::set<std::string> held;
  std::vector<std::string> active;
  for (auto& reservation : gateway->reservations()) {
    if (reservation.current == relay_reservation::state::lost) {
      spdlog::warn("membership {}: relay {} lost ({}); looking for another", me(self),
                   reservation.relay, reservation.failure);
      gateway->release(reservation.relay);
      st.relay_cooldown[reservation.relay] = now + st.options.remove_after;
      continue;
    }
    held.insert(reservation.relay);
    if (reservation.current == relay_reservation::state::active)
      active.push_back(reservation.relay);
  }
  std::erase_if(st.relay_cooldown, [&](const auto& entry) { return entry.second <= now; });
  // Reachable members first (alive as far as the view knows): the fastest links first as their
  // reports claim them (a relay carries both directions of its circuits), the nearest first
  // among equals and unmeasured ones (round trips this peer's links measured); then the initial
  // peers that answered the probe (all there is before the view fills).
  std::vector<relay_candidate> members;
  const auto heard = gateway->heard_from();
  for (auto& member : st.view->members())
    if (member.info.reachable && member.info.peer_id != st.view->self().info.peer_id) {
      relay_candidate candidate{member.info.address()};
      if (auto rate = st.link_rates.find(member.info.peer_id); rate != st.link_rates.end())
        candidate.link_rate = rate->second;
      if (auto found = heard.find(member.info.peer_id); found != heard.end())
        candidate.round_trip = found->second.round_trip;
      members.push_back(std::move(candidate));
    }
  std::vector<std::string> candidates = rank_relay_candidates(std::move(members));
  candidates.insert(candidates.end(), st.options.relay_candidates.begin(),
                    st.options.relay_candidates.end());
  for (auto& candidate : candidates) {
    if (held.size() >= st.options.relays_wanted)
      break;
    auto parsed = parse_peer_address(candidate);
    if (!parsed || held.contains(candidate) || st.own_addresses.contains(candidate) ||
        st.relay_cooldown.contains(candidate))
      continue;
    gateway->reserve(parsed->first, parsed->second);
    held.insert(candidate);
  }
  auto own = st.view->self();
  std::sort(active.begin(), active.end());
  if (active.size() > max_relays_per_peer)
    active.resize(max_relays_per_peer);
  if (own.info.relays == active)
    return;
  own.info.relays = active;
  st.view->set_self(own);
  std::string listed;
  for (auto& relay : active)
    listed += (listed.empty() ? ": " : ", ") + relay;
  spdlog::info("membership {}: reachable through {} relay(s){}", me(self), active.size(), listed);
  publish_view(self);
  announce_again(self);
}

// Sealed bytes from a member prove it alive while its gossip waits behind megabytes of chunks
// on the same link (a slow home upload, a lossy path): the gateway notes when each peer's
// bytes last arrived, the round trip its link's handshake measured and how long its losses can
// stall it, which widen the member's silence thresholds (swarm_view::set_link_timing).
void note_link_activity(membership_pointer self) {
  auto& st = self->state;
  if (!st.options.gateway)
    return;
  for (const auto& [peer_id, seen] : st.options.gateway->heard_from()) {
    const auto* member = st.view->find(peer_id);
    const auto last = st.view->last_heard(peer_id);
    if (member == nullptr || !last)
      continue;
    st.view->set_link_timing(peer_id, seen.round_trip, seen.loss_stall);
    if (seen.last_bytes > *last &&
        st.view->heard_from(peer_id, member->info.incarnation, seen.last_bytes))
      spdlog::info("membership {}: peer {} is alive again (its link carries bytes)", me(self),
                   describe(member->info));
  }
}

void on_tick(membership_pointer self) {
  auto& st = self->state;
  auto now = clock::now();
  ++st.ticks;
  bool changed = false;
  note_link_activity(self);
  auto report = st.view->check_liveness(now);
  for (auto& info : report.suspected) {
    st.metrics.suspected.inc();
    spdlog::warn("membership {}: peer {} suspected: silent for {} ms plus twice its round trip "
                 "and its link's retransmission stalls",
                 me(self), describe(info), st.options.suspect_after.count());
  }
  for (auto& member : report.timed_out) {
    forget_member(self, member, removal_reason::timeout, {});
    changed = true;
  }
  std::erase_if(st.dial_cooldown, [&](const auto& entry) { return entry.second <= now; });

  // Every member gets a heartbeat; only gossip_fanout random ones also get the whole view, so
  // news spreads epidemically in O(log n) intervals without n^2 full lists per interval.
  auto infos = st.view->other_infos();
  const std::vector<peer_info> no_news;
  std::vector<swarm_member> others;
  for (auto& member : st.view->members())
    if (member.info.peer_id != st.view->self().info.peer_id)
      others.push_back(member);
  std::shuffle(others.begin(), others.end(), st.random);
  for (std::size_t i = 0; i < others.size(); ++i)
    self->send(others[i].membership, gossip_atom_v, st.view->self().info,
               i < st.options.gossip_fanout ? infos : no_news);

  std::vector<peer_info> candidates;
  for (auto& [id, info] : st.view->candidates())
    candidates.push_back(info);
  std::erase_if(st.relayed_redials, [&](const auto& entry) {
    return entry.second.second <= now || st.view->find(entry.first) != nullptr;
  });
  for (auto& [id, redial] : st.relayed_redials)
    candidates.push_back(redial.first);
  dial_candidates(self, candidates);
  if (st.view->others() == 0)
    dial_initial_peers(self, false);
  else if (st.options.split_check_every > 0 && st.ticks % st.options.split_check_every == 0)
    dial_initial_peers(self, true);

  keep_relays(self);
  if (changed)
    publish_view(self);
  else
    report_to_board(self);  // suspicions and last-heard times
  self->delayed_send(self, st.options.gossip_interval, tick_atom_v);
}

void say_goodbye(membership_pointer self) {
  auto& st = self->state;
  if (!st.view)
    return;
  for (auto& member : st.view->members())
    if (member.info.peer_id != st.view->self().info.peer_id && member.membership)
      self->send(member.membership, leave_atom_v, st.view->self().info.peer_id);
  if (st.view->others() > 0)
    spdlog::info("membership {}: leaving the swarm ({} peers told)", me(self),
                 st.view->others());
}

void fail(membership_pointer self, caf::error reason) {
  auto& st = self->state;
  for (auto& waiter : st.port_waiters)
    waiter.deliver(reason);
  st.port_waiters.clear();
  say_goodbye(self);
  self->quit(std::move(reason));
}

void start_listening(membership_pointer self) {
  auto& st = self->state;
  auto where = st.options.listen_host + ":" + std::to_string(st.options.listen_port);
  // Behind a gateway, CAF is reachable from this machine only; the gateway holds the public port.
  const auto& gateway = st.options.gateway;
  auto caf_host = gateway ? std::string("127.0.0.1") : st.options.listen_host;
  uint16_t caf_port = gateway ? 0 : st.options.listen_port;
  self
    ->request(self->system().middleman().actor_handle(), st.options.connect_timeout,
              caf::publish_atom::value, caf_port,
              caf::actor_cast<caf::strong_actor_ptr>(self),
              self->system().message_types<membership_remote>(), caf_host,
              true)
    .then(
      [=](uint16_t bound) {
        auto& st = self->state;
        if (st.options.gateway) {
          st.options.gateway->set_local_port(bound);
          bound = st.options.gateway->public_port();
        }
        st.published = true;
        auto own = st.view->self();
        if (!st.options.announce_port_fixed || own.info.port == 0)
          own.info.port = bound;
        own.info.alternates.clear();
        for (auto& [host, port] : st.options.alternates)
          own.info.alternates.push_back(format_peer_address(host, port != 0 ? port : bound));
        st.view->set_self(own);
        spdlog::info("membership {}: listening on port {} (announced as {}), swarm '{}', "
                     "incarnation {}, {}",
                     me(self), bound, describe_addresses(own.info.addresses()),
                     own.info.swarm_id, own.info.incarnation,
                     st.options.gateway ? "links sealed (handshake, encryption)"
                                        : "plain links (network.encryption = false)");
        for (auto& waiter : st.port_waiters)
          waiter.deliver(bound);
        st.port_waiters.clear();
        publish_view(self);
        if (st.initial_peers.empty())
          spdlog::info("membership {}: no initial peers: starting a new swarm", me(self));
        if (!own.info.reachable)
          spdlog::info("membership {}: not reachable from other peers: dialing out, reached "
                       "through relays, reducing no part of rounds",
                       me(self));
        keep_relays(self);
        dial_initial_peers(self, false);
        self->delayed_send(self, st.options.gossip_interval, tick_atom_v);
      },
      [=](caf::error& err) {
        auto text = "membership: cannot listen on " + where + ": " + self->system().render(err);
        spdlog::error("{}", text);
        fail(self, make_error(errc::invalid_config, text));
      });
}

membership_actor::behavior_type membership(membership_pointer self, membership_options options) {
  auto& st = self->state;
  options.self.membership = membership_remote{self};
  swarm_view_timing timing{options.suspect_after, options.remove_after, options.tombstone_ttl};
  st.view.emplace(options.self, timing);
  // A peer gossips to a few others each interval and says hello on (re)connecting: from one
  // node, ten times the gossip rate (at least 20/s) with bursts of twice that is never honest
  // traffic's limit.
  const double gossips_per_second =
    1000.0 / static_cast<double>(std::max<int64_t>(options.gossip_interval.count(), 1));
  const double rate = std::max(20.0, 10 * gossips_per_second);
  st.remote_rate.emplace(rate, 2 * rate);
  st.options = std::move(options);
  for (auto& text : st.options.initial_peers) {
    auto parsed = parse_peer_address(text);
    if (!parsed) {
      auto reason = "membership: initial peer '" + text + "' is not host:port";
      spdlog::error("{}", reason);
      self->quit(make_error(errc::invalid_config, reason));
      return membership_actor::behavior_type::make_empty_behavior();
    }
    st.initial_peers.push_back({parsed->first, parsed->second,
                                parsed->first + ":" + std::to_string(parsed->second)});
  }
  self->set_exit_handler([=](caf::exit_msg& msg) {
    if (!msg.reason || msg.reason == caf::exit_reason::normal)
      return;
    say_goodbye(self);
    self->quit(std::move(msg.reason));
  });
  self->set_down_handler([=](caf::down_msg& dm) {
    auto& st = self->state;
    auto subscriber =
      std::find_if(st.subscribers.begin(), st.subscribers.end(),
                   [&](const view_subscriber& s) { return s.address() == dm.source; });
    if (subscriber != st.subscribers.end()) {
      st.subscribers.erase(subscriber);
      return;
    }
    for (auto& member : st.view->members()) {
      if (member.info.peer_id == st.view->self().info.peer_id || !member.membership ||
          member.membership.address() != dm.source)
        continue;
      // A clean shutdown's down message may overtake its goodbye: that peer left, not died.
      bool clean = !dm.reason || dm.reason == caf::exit_reason::normal ||
                   dm.reason == caf::exit_reason::user_shutdown;
      if (auto removed = st.view->remove(member.info.peer_id, clock::now())) {
        forget_member(self, *removed, clean ? removal_reason::left : removal_reason::died,
                      clean ? std::string{} : self->system().render(dm.reason));
        publish_view(self);
        // A link through a relay ends when the relay does, with both peers alive: the one that
        // opened it dials again at once (through another relay), not after the tombstone.
        if (!clean && !removed->info.reachable &&
            opens_link_to(st.view->self().info, removed->info)) {
          st.relayed_redials[removed->info.peer_id] = {removed->info,
                                                       clock::now() + st.options.tombstone_ttl};
          dial_member(self, removed->info);
        }
      }
      return;
    }
  });
  start_listening(self);
  return {
    [=](hello_atom, swarm_member& them,
        bool want_known) -> caf::result<swarm_member, std::vector<peer_info>> {
      auto& st = self->state;
      if (over_rate(self)) {
        reject(self, rejection::rate_limited, "hello from " + them.info.address());
        return rejection_error(rejection::rate_limited);
      }
      if (auto reason = validate_peer_info(them.info)) {
        reject(self, *reason, "hello");
        return rejection_error(*reason);
      }
      if (them.info.peer_id == st.view->self().info.peer_id) {
        reject(self, rejection::own_id, "hello from " + them.info.address());
        return rejection_error(rejection::own_id);
      }
      if (!them.membership) {
        reject(self, rejection::missing_handle, "hello from " + describe(them.info));
        return rejection_error(rejection::missing_handle);
      }
      auto sender = self->current_sender();
      if (!sender || !handles_live_on(them, sender->node())) {
        reject(self, rejection::wrong_sender, "hello from " + describe(them.info));
        return rejection_error(rejection::wrong_sender);
      }
      if (st.options.require_proof && !hello_proven(them, caf::to_string(sender->node()))) {
        reject(self, rejection::bad_signature, "hello from " + describe(them.info));
        return rejection_error(rejection::bad_signature);
      }
      if (admit_member(self, them) == swarm_view::admission::stale) {
        reject(self, rejection::stale_incarnation, "hello from " + describe(them.info));
        return rejection_error(rejection::stale_incarnation);
      }
      publish_view(self);
      std::vector<peer_info> known;
      if (want_known) {
        known = st.view->other_infos();
        std::erase_if(known, [&](const peer_info& p) { return p.peer_id == them.info.peer_id; });
      }
      return {signed_self(self), std::move(known)};
    },
    [=](gossip_atom, peer_info& from, std::vector<peer_info>& known) {
      auto& st = self->state;
      if (over_rate(self)) {
        reject(self, rejection::rate_limited, "gossip from " + from.address());
        return;
      }
      if (auto reason = validate_peer_info(from)) {
        reject(self, *reason, "gossip");
        return;
      }
      if (auto reason = validate_peer_list(known)) {
        reject(self, *reason, "gossip from " + describe(from));
        return;
      }
      if (from.peer_id == st.view->self().info.peer_id) {
        reject(self, rejection::own_id, "gossip from " + from.address());
        return;
      }
      auto now = clock::now();
      auto member = st.view->find(from.peer_id);
      if (member && member->info.incarnation == from.incarnation) {
        auto sender = self->current_sender();
        if (!sender || sender->node() != member->membership.node()) {
          reject(self, rejection::wrong_sender, "gossip in the name of " + describe(from));
          return;
        }
        if (st.view->heard_from(from.peer_id, from.incarnation, now))
          spdlog::info("membership {}: peer {} is alive again", me(self), describe(from));
      } else if (!member || member->info.incarnation < from.incarnation) {
        // It knows us but we do not know it (or only an older incarnation): say hello.
        dial_candidates(self, st.view->learn(std::vector{from}, now));
      }
      dial_candidates(self, st.view->learn(known, now));
    },
    [=](leave_atom, std::string& peer_id) {
      auto& st = self->state;
      if (!is_valid_peer_id(peer_id)) {
        reject(self, rejection::bad_peer_id, "leave");
        return;
      }
      auto member = st.view->find(peer_id);
      if (!member)
        return;
      auto sender = self->current_sender();
      bool from_that_peer = sender && sender->node() == member->membership.node();
      bool from_this_process = sender && sender->node() == self->node();
      if (!from_that_peer && !from_this_process) {
        reject(self, rejection::wrong_sender, "leave in the name of " + describe(member->info));
        return;
      }
      if (auto removed = st.view->remove(peer_id, clock::now())) {
        forget_member(self, *removed, removal_reason::left, {});
        publish_view(self);
      }
    },
    [=](tick_atom) {
      if (!refuse_remote(self, "membership", "tick"))
        on_tick(self);
    },
    [=](retry_atom, const std::string& address, uint16_t tunnel, bool bootstrap) {
      if (!refuse_remote(self, "membership", "retry") &&
          self->state.tunnel_deadlines.contains(address))
        await_tunnel(self, address, tunnel, bootstrap);
    },
    // Local, from averaging groups: chunks from this peer arrived, which proves it alive (its
    // heartbeats may be queued behind those chunks).
    // Local, from progress: a peer's link rate as its signed reports claim it (relay choice).
    [=](link_rate_atom, const std::string& peer_id, double bytes_per_second) {
      auto& st = self->state;
      if (refuse_remote(self, "membership", "link rate"))
        return;
      if (bytes_per_second > 0 && st.view->find(peer_id) != nullptr)
        st.link_rates[peer_id] = bytes_per_second;
      else
        st.link_rates.erase(peer_id);
    },
    [=](alive_atom, const std::string& peer_id) {
      auto& st = self->state;
      if (refuse_remote(self, "membership", "alive"))
        return;
      if (const auto* member = st.view->find(peer_id);
          member != nullptr && st.view->heard_from(peer_id, member->info.incarnation, clock::now()))
        spdlog::info("membership {}: peer {} is alive again (its chunks arrive)", me(self),
                     describe(member->info));
    },
    [=](subscribe_atom, view_subscriber& who) {
      auto& st = self->state;
      if (refuse_remote(self, "membership", "subscribe") || !who)
        return;
      if (std::find(st.subscribers.begin(), st.subscribers.end(), who) == st.subscribers.end()) {
        st.subscribers.push_back(who);
        self->monitor(who);
      }
      self->send(who, view_atom_v, st.view->members());
    },
    [=](attach_atom, progress_remote& progress, averager_remote& averager,
        state_server_remote& state_server) {
      auto& st = self->state;
      if (refuse_remote(self, "membership", "attach"))
        return;
      auto own = st.view->self();
      own.progress = std::move(progress);
      own.averager = std::move(averager);
      own.state_server = std::move(state_server);
      st.view->set_self(own);
      publish_view(self);
      // Members take handles only from us directly: a fresh hello hands them over.
      for (auto& member : st.view->members()) {
        if (member.info.peer_id == own.info.peer_id)
          continue;
        self->request(member.membership, st.options.connect_timeout, hello_atom_v,
                      signed_self(self), false)
          .then([](swarm_member&, std::vector<peer_info>&) {},
                [=](caf::error& err) {
                  spdlog::debug("membership {}: re-announcing handles to {} failed: {}", me(self),
                                describe(member.info), self->system().render(err));
                });
      }
    },
    // From anyone (`ddactor status` on another node): text only, and a snapshot of the board is a
    // few copies under its mutex, so answering never holds up membership's own work.
    [=](status_atom) -> caf::result<std::string> {
      const auto& board = self->state.options.status_board;
      if (!board)
        return make_error(errc::invalid_message, "membership: this peer keeps no status");
      return render_swarm_status_json(board->snapshot());
    },
    // Local: the view holds every member's actor handles.
    [=](caf::get_atom) -> caf::result<std::vector<swarm_member>> {
      if (refuse_remote(self, "membership", "get"))
        return make_error(errc::invalid_message, "membership: the view is for this peer only");
      return self->state.view->members();
    },
    [=](caf::get_atom, caf::ok_atom) -> caf::result<uint16_t> {
      auto& st = self->state;
      if (refuse_remote(self, "membership", "get port"))
        return make_error(errc::invalid_message, "membership: for this peer only");
      if (st.published)
        return st.view->self().info.port;
      auto promise = self->make_response_promise();
      st.port_waiters.push_back(promise);
      return promise;
    },
  };
}

} // namespace

membership_actor spawn_membership(caf::actor_system& system, membership_options options) {
  return system.spawn(membership, std::move(options));
}

} // namespace ddactor
