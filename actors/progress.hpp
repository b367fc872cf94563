#pragma once
// The progress actor: how far the swarm is in the current epoch (hivemind's semantics). Every
// peer reports (epoch, samples this epoch, samples/s) to every other peer of its swarm whenever
// its trainer starts a batch (the batch counts from then: "committed" samples) and a few times a
// second as a heartbeat; each estimates the swarm's samples in its epoch as the sum of the latest
// reports. Counting batches in flight keeps an epoch within one batch of the target, where
// counting finished batches overshot it by one batch per peer. When the estimate reaches
// train.target_batch_size, the epoch's averaging round starts: the trainer gets
// `(average_atom, epoch)`. Because the schedule follows the global epoch, peers can come and go
// without retuning anything.
//
//   trainer --(progress, epoch, samples, samples/s, digest)--> progress --(progress, report)--> peers
//   progress --(average, epoch)--> trainer                 once per epoch, at the target
//   progress --swarm_progress--> trainer                   every interval (for logs, catch-up)

#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include "caf/all.hpp"

#include "runtime/message_types.hpp"
#include "runtime/secure/peer_key.hpp"

namespace ddactor {

class swarm_status_board;

/// What the trainer hears from progress: the epoch to average, the swarm's estimate.
using progress_listener =
  caf::typed_actor<caf::reacts_to<average_atom, int64_t /*epoch*/>, caf::reacts_to<swarm_progress>>;

/// The averager hears the peers' epochs (matchmaking counts and leads only those of an epoch).
using epochs_listener = caf::typed_actor<caf::reacts_to<peer_epochs>>;

/// Membership hears the link rate each peer reports (for its choice of relays).
using peer_link_rate_sink =
  caf::typed_actor<caf::reacts_to<link_rate_atom, std::string /*peer_id*/, double>>;

/// The full interface: the remote one (reports of the other peers) and what this peer's own
/// actors tell it.
using progress_actor = progress_remote::extend<
  caf::reacts_to<attach_atom, progress_listener>,
  caf::reacts_to<attach_atom, epochs_listener>,
  caf::reacts_to<view_atom, std::vector<swarm_member>>,
  // The trainer's own progress: epoch, samples, samples/s, state digest, resyncing, may_lead.
  caf::reacts_to<progress_atom, int64_t, int64_t, double, uint64_t, bool, bool>,
  caf::reacts_to<link_rate_atom, double /*bytes_per_second*/>,
  caf::reacts_to<tick_atom>>;

struct progress_options {
  std::string peer_id;
  std::string swarm_id;
  int64_t target_batch_size = 256;
  std::chrono::milliseconds report_interval{250};
  /// Reports older than this are ignored (the peer is probably gone or stuck).
  std::chrono::milliseconds stale_after{5000};
  /// Compare weight digests with the peers of the same epoch and have the trainer take the
  /// agreed state when ours differs (runtime/state_agreement.hpp). Needs a lossless state
  /// transfer served every epoch, or a downloaded copy could never match.
  bool repair_splits = true;
  /// Peers of one epoch beyond this average in several groups and differ on purpose.
  size_t group_size = 16;
  /// Distinct peers that must vouch for a state before this peer falls behind it or takes it.
  size_t state_quorum = 2;
  /// Where every report (this peer's too: epoch, samples/s, when) is written for the status
  /// page and `ddactor status`; may be null.
  std::shared_ptr<swarm_status_board> status_board;
  /// Signs this peer's reports (runtime/secure/report_proof.hpp); none: unsigned.
  std::optional<peer_key> key;
  /// Refuse reports whose signature does not hold (every networked peer: reports decide
  /// downloads and quorums).
  bool require_proof = false;
  /// Tests of the signatures (debug.byzantine = "forged_state"): also send our report under
  /// every other peer's id, as if they vouched for our claims.
  bool impersonate_others = false;
};

/// The averager attached with `(attach_atom, epochs_listener)` gets peer_epochs every interval.
progress_actor spawn_progress(caf::actor_system& system, progress_options options);

} // namespace ddactor
