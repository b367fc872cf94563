#pragma once
// The membership actor: this peer's view of the swarm. It publishes itself on the listen address
// (with a link gateway, on 127.0.0.1 behind the gateway, which holds the listen address and
// carries every dial: runtime/secure/link_gateway.hpp), joins through the initial peers, learns
// the others from gossip, and connects to each peer directly, so that every actor handle in the
// view comes from that peer over its own connection (messages never route through a third
// peer). Hellos are signed and, in a real swarm, must prove their id (hello_proof.hpp). It
// watches every member (a monitor on its membership actor, plus gossip heartbeats), removes dead
// and silent peers, and tells its local subscribers (progress, averager, peer) about every change
// of the view.
//
// Peers that cannot accept connections (peer_info::reachable false, behind NAT) are never
// dialed by reachable peers: they dial every reachable peer themselves, and between two of them
// the one with the lower id dials through a relay of the other (link_gateway.hpp). Such a peer
// keeps relays_wanted reservations at reachable peers and announces them (a hello to every
// member when they change); a link through a relay that broke is dialed again at once through
// another relay, since both peers may well be alive. The rules of the view
// (incarnations, tombstones, suspicion, split detection, validation) are runtime/swarm_view.hpp;
// this actor owns the connections, timers, logs and metrics.
//
// A member's lifecycle, as this peer sees it:
//
//   (address from initial_peers or gossip)
//          |
//          v
//   CONNECTING --(connect + hello exchange)--> ALIVE <---------------------------+
//          |                                     |  \                            |
//          | (refused, timeout, invalid)         |   (silent > suspect_after)    | (heard again)
//          v                                     |          v                    |
//   retried after bootstrap_retry                |      SUSPECTED ---------------+
//   (learned again from gossip)                  |          |
//                                                |          | (silent > remove_after)
//     (leave; down: actor or link gone; a higher |          v
//      incarnation of the same id) --------------+----> REMOVED (tombstone: id, incarnation)
//                                                               |
//          gossip naming that incarnation is ignored until the tombstone expires; a higher
//          incarnation (a restarted peer) or the peer's own hello brings it back
//
// Messages (beyond the network protocol in runtime/swarm_messages.hpp):
//   (get_atom)                              -> std::vector<swarm_member>: the view, sorted by
//                                              peer id, this peer included
//   (get_atom, caf::ok_atom)                -> uint16_t: the bound port (waits for the bind)
//   (subscribe_atom, view_subscriber who)      who gets (view_atom, std::vector<swarm_member>)
//                                              now and after every change
//   (attach_atom, progress, averager, state_server: their remote handles)
//                                              replaces this peer's local handles (after a
//                                              restart of one of them) and re-announces them
//   (alive_atom, std::string peer_id)          from this process only (an averaging group whose
//                                              chunks from that peer arrive): counts as hearing
//                                              from it, since its heartbeats may queue behind them
//   (status_atom)                           -> std::string: the swarm as this peer sees it
//                                              (monitoring/swarm_status.hpp's JSON; plain text, no
//                                              actor handles), for `ddactor status` on any node;
//                                              an error when no status board was given
//
// It quits with errc::invalid_config if it cannot listen (the address is taken or wrong) or an
// initial peer is not "host:port". On an exit message (user_shutdown or any other catchable
// reason) it says goodbye (leave) to every member first; `kill` is a crash, no goodbye.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "caf/all.hpp"

#include "runtime/peer_address.hpp"
#include "runtime/secure/peer_key.hpp"
#include "runtime/swarm_messages.hpp"

namespace ddactor {

class swarm_status_board;
class link_gateway;

/// Told the view now and after every change: progress, the averager, the peer.
using view_subscriber = caf::typed_actor<caf::reacts_to<view_atom, std::vector<swarm_member>>>;

/// The full interface: the remote one (hellos, gossip, goodbyes, status) and what only this
/// peer's own actors may send (the messages above; its timers).
using membership_actor = membership_remote::extend<
  caf::replies_to<caf::get_atom>::with<std::vector<swarm_member>>,
  caf::replies_to<caf::get_atom, caf::ok_atom>::with<uint16_t>,
  caf::reacts_to<subscribe_atom, view_subscriber>,
  caf::reacts_to<attach_atom, progress_remote, averager_remote, state_server_remote>,
  caf::reacts_to<alive_atom, std::string /*peer_id*/>,
  caf::reacts_to<link_rate_atom, std::string /*peer_id*/, double /*bytes_per_second*/>,
  caf::reacts_to<tick_atom>,
  caf::reacts_to<retry_atom, std::string /*address*/, uint16_t /*tunnel*/, bool /*bootstrap*/>>;

struct membership_options {
  /// This peer: info (id, announce host and port, swarm id, incarnation) and its local handles
  /// (progress, averager, state_server; any may be null). The membership handle is set by the
  /// actor itself.
  swarm_member self;
  /// Where to publish.
  std::string listen_host = "127.0.0.1";
  /// 0: an ephemeral port. The bound port becomes self.info.port unless announce_port_fixed.
  uint16_t listen_port = 0;
  /// Keep self.info.port as given (behind a NAT or a port forward).
  bool announce_port_fixed = false;
  /// Further addresses to announce after self.info's (runtime/announced_addresses.hpp): they
  /// become self.info.alternates, a port of 0 replaced by the one listened on.
  std::vector<std::pair<std::string, uint16_t>> alternates;
  /// "host:port" ("[v6]:port" for IPv6) of any peers of the swarm; empty: start a new swarm.
  std::vector<std::string> initial_peers;
  std::chrono::milliseconds gossip_interval{1000};
  /// Members that get the whole view with each interval's gossip (the others a heartbeat).
  std::size_t gossip_fanout = 3;
  std::chrono::milliseconds suspect_after{3000};
  std::chrono::milliseconds remove_after{8000};
  std::chrono::milliseconds connect_timeout{5000};
  std::chrono::milliseconds bootstrap_retry{2000};
  /// How long a removed peer's incarnation is remembered (gossip about it ignored).
  std::chrono::milliseconds tombstone_ttl{30000};
  /// Every this many gossip intervals, initial peers missing from the view are contacted again,
  /// so that a swarm that split (and healed its network) merges again.
  uint32_t split_check_every = 10;
  /// Where this peer's id and address and the members of the view (address, suspicion, last
  /// heard) are written for the status page and `ddactor status`; may be null.
  std::shared_ptr<swarm_status_board> status_board;
  /// The peer's front door (runtime/secure/link_gateway.hpp): when set, CAF publishes on
  /// 127.0.0.1 only, the gateway's public port (bound at listen_host:listen_port) is the one
  /// announced, and every dial goes through a tunnel of the gateway. Null: plain CAF on
  /// listen_host:listen_port (trusted networks, in-process tests).
  std::shared_ptr<link_gateway> gateway;
  /// The key this peer's id derives from: its hellos are signed with it (hello_proof.hpp).
  std::optional<peer_key> key;
  /// Refuse hellos that do not prove their id (every peer of a real swarm signs its own).
  bool require_proof = false;
  /// For a peer that cannot accept connections (self.info.reachable false; needs the gateway):
  /// "host:port" of peers to hold relay reservations at first (the initial peers that answered
  /// its reachability probe); later ones come from the reachable members of the view.
  std::vector<std::string> relay_candidates;
  /// Reservations it keeps (each is a relay others can reach it through).
  std::size_t relays_wanted = 2;
};

membership_actor spawn_membership(caf::actor_system& system, membership_options options);

} // namespace ddactor
