#pragma once
// The averager actor: turns the trainer's "average this for epoch e" into a round with other
// peers. Two roles in one actor:
//
//   member  For each request it spawns an averaging_group actor, then asks the current leader to
//           put that group actor into a group for the epoch. The leader is the live peer of the
//           epoch first in that epoch's leader order (a hash of the epoch and the id) that may
//           lead it (runtime/matchmaking_rules.hpp: views that differ for a moment still lead
//           every member to one leader; no peer is special: when the leader dies, the next in
//           order takes over and members re-join it).
//   leader  Collects joins per epoch until every live peer of the swarm has joined or
//           averaging.matchmaking_time has passed since the first join, then cuts the joined
//           peers (sorted by id) into groups of at most averaging.group_size and answers every
//           join with its group_assignment. Late joins for a matched epoch are refused.
//
//   trainer --(average, average_request)--> averager --(join, round_request)--> leader
//   leader --group_assignment--> averager --> group actor --all-reduce--> average_outcome
//
// A peer that finds no partner in time (or whose leader keeps failing) gets its own values back
// (round_result::alone): it steps alone, and says so in a metric. A peer whose join comes after
// the leader formed that epoch's groups (errc::round_closed) gets round_result::missed: the
// others average without it, so it applies nothing and takes their state. Every request has a
// deadline.

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "caf/all.hpp"

#include "actors/averaging_group.hpp"
#include "runtime/allreduce/centered_clip.hpp"
#include "runtime/compression/tensor_codec.hpp"
#include "runtime/secure/peer_key.hpp"

namespace ddactor {

class swarm_status_board;

/// The full interface: the remote one (joins, as a leader), the trainer's requests, the view
/// and the epochs from membership and progress, what its group actors tell it, its own timers.
using averager_actor = averager_remote::extend_with<round_owner>::extend<
  caf::replies_to<average_atom, average_request>::with<average_outcome>,
  caf::reacts_to<view_atom, std::vector<swarm_member>>,
  caf::reacts_to<peer_epochs>,
  caf::reacts_to<timeout_atom, int64_t /*epoch*/>,
  caf::reacts_to<retry_atom, int64_t /*epoch*/, uint64_t /*attempt*/>,
  caf::reacts_to<attach_atom, liveness_sink>>;

/// Told the link rate this peer's rounds measured (bytes per second): progress.
using link_rate_sink = caf::typed_actor<caf::reacts_to<link_rate_atom, double>>;

struct averager_options {
  std::string peer_id;
  std::string swarm_id;
  /// This peer's key: as leader it signs its assignments (runtime/secure/assignment_proof.hpp).
  std::optional<peer_key> key;
  /// Refuse an assignment its leader did not sign (the leader is then skipped, like a silent
  /// one).
  bool require_proof = false;
  size_t group_size = 16;
  size_t chunk_elements = 262144;
  std::chrono::milliseconds matchmaking_time{5000};
  std::chrono::milliseconds allreduce_timeout{60000};
  std::chrono::milliseconds request_timeout{10000};
  std::string codec = "none";
  codec_options codec_settings;
  /// Compressor actors (threads) that code the chunks of every round (at least 1).
  size_t compressor_threads = 2;
  /// This peer's link rate in bytes per second for the leader's cut of the vector
  /// (averaging.bandwidth); 0: measured by its own rounds (runtime/allreduce/link_rate_estimate).
  double link_rate = 0;
  /// False behind NAT (network.reachable): its round requests say so, and it reduces no part.
  bool reachable = true;
  /// averaging.max_weight_ratio (runtime/allreduce/butterfly_round.hpp); 0: no bound.
  double max_weight_ratio = 16;
  /// averaging.aggregation: the weighted mean or CenteredClip at each reducer.
  aggregation_settings aggregation;
  /// Fault injection for tests (config [debug]); 0: never.
  int64_t die_in_round = 0;
  std::string die_as = "sender";
  int64_t corrupt_chunks_from = 0;
  /// debug.byzantine = "scaled_values": this peer's values, as sent to reducers, times this.
  float scale_chunks = 0;
  /// debug.byzantine = "silent_leader": joins of other peers are taken and never answered.
  bool silent_leader = false;
  /// debug.byzantine = "lying_reducer": this peer's part of every round goes out negated.
  bool lie_as_reducer = false;
  /// debug.byzantine = "false_accuser": it accuses every reducer it audits, with a forged proof.
  bool accuse_falsely = false;
  /// averaging.audit_probability: the chance that this peer audits another reducer after a
  /// round (actors/averaging_group.hpp); 0: never (it still shows its own evidence).
  double audit_probability = 0.1;
  /// network.ban_time: how long a peer whose misbehaviour reached the ban score is left out.
  std::chrono::seconds ban_time{600};
  /// Told of every ban (the link gateway then refuses the peer's links); may be empty. Called
  /// on the averager's thread.
  std::function<void(const std::string& peer_id, std::chrono::steady_clock::time_point until)>
    on_ban;
  /// Where the outcome of every round (its group, leader, duration, bytes) is written for the
  /// status page and `ddactor status`; may be null.
  std::shared_ptr<swarm_status_board> status_board;
  /// Told this peer's measured link rate after each round, for its progress reports; may be
  /// null.
  link_rate_sink progress;
};

/// The averager's `(attach_atom, liveness_sink)` names membership, which its group actors then
/// tell about members whose chunks arrive.
averager_actor spawn_averager(caf::actor_system& system, averager_options options);

/// How long the trainer should wait for an average_outcome at most.
std::chrono::milliseconds averaging_deadline(const averager_options& options);

} // namespace ddactor
