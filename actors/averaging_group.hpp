#pragma once
// One peer's side of one averaging round: the actor that drives the round's state machine
// (runtime/allreduce/butterfly_round.hpp: the algorithm, its states and its failure semantics)
// with real messages, timers, monitors and compressors.
//
// The averager spawns one group actor per round *before* matchmaking ends and offers its handle
// to the leader; the leader's assignment names every member's group actor, so chunks go from
// group actor to group actor directly. Chunks are encoded and decoded by the averager's
// compressor actors, several at once, while this actor sends, receives and reduces: a chunk goes
// out as soon as it is encoded, and is reduced as soon as it is decoded. Detached: reducing
// megabytes never blocks CAF's scheduler.
//
//   WAITING --(assignment)--> RUNNING --(round_done)--> digests --(all in, or 5 s)--> quit
//                               |  any state --(deadline)--> FAILED (failed outcome) --> quit
//
// Audits (runtime/allreduce/reducer_audit.hpp): after a round among several members the group
// stays a while, as a reducer to show its evidence to auditors (`(audit_atom, audit_request)`,
// answered once per member with the asked pieces' signed inputs, for max(10 s, the round's
// duration), or until its averager has finished two more rounds),
// and, with probability audit_probability, as an auditor of one other reducer picked at random
// (privately: a reducer cannot know whether it will be checked). A reducer whose result does not
// follow from its inputs, whose evidence is refused, or that does not answer in time is reported
// to the averager `(audit_atom, peer_id, verdict, detail)`, which scores and bans it; a proven
// lie also goes to the other members as an accusation, which each checks with an audit of its
// own before it believes it (an accusation it cannot confirm is only counted: it cannot tell a
// lying accuser from a reducer that showed the two of them different evidence).
//
// This actor adds what the state machine leaves out: the deadline and the digest wait (ticks),
// monitors of the members (a member gone), chunks that arrive before the assignment, which
// compressor codes a chunk, bytes and link rates, metrics, logs, and fault injection for tests.

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "caf/all.hpp"

#include "actors/compressor.hpp"
#include "runtime/allreduce/centered_clip.hpp"
#include "runtime/allreduce/chunk_policy.hpp"
#include "runtime/allreduce/recycled_floats.hpp"
#include "runtime/message_types.hpp"
#include "runtime/secure/peer_key.hpp"

namespace ddactor {

/// The full interface: the remote one (chunks, digests, audits from the other members' groups),
/// the assignment from this peer's averager, coded chunks from its compressors, its own timer.
using averaging_group_actor = averaging_group_remote::extend<
  caf::reacts_to<group_assignment>,
  caf::reacts_to<compressor_result>,
  caf::reacts_to<tick_atom>>;

/// Who gets a round's outcome and what it learned: the averager.
using round_owner = caf::typed_actor<
  caf::reacts_to<average_outcome>,
  caf::reacts_to<link_rate_atom, double /*download_bytes*/, double /*download_seconds*/,
                 double /*upload_bytes*/, double /*upload_rate*/>,
  caf::reacts_to<audit_atom, uint64_t /*round_id*/, std::string /*peer_id*/,
                 std::string /*verdict*/, std::string /*detail*/>>;

/// Told that a member's chunks arrive: membership.
using liveness_sink = caf::typed_actor<caf::reacts_to<alive_atom, std::string /*peer_id*/>>;

struct averaging_group_options {
  /// Values this peer contributes (their weight, its samples, is in the leader's assignment).
  std::shared_ptr<const std::vector<float>> values;
  /// Where the round writes its result (one buffer reused across rounds).
  std::shared_ptr<recycled_floats> output_buffers;
  /// Elements per chunk on the wire.
  size_t chunk_elements = 262144;
  /// averaging.max_weight_ratio: weights above this multiple of the group's median are clipped.
  double max_weight_ratio = 16;
  /// averaging.aggregation and its clip settings.
  aggregation_settings aggregation;
  /// The round's deadline, counted from the assignment.
  std::chrono::milliseconds timeout{60000};
  /// The codec of each piece (runtime/allreduce/chunk_policy.hpp).
  chunk_policy policy;
  /// Top-k's error feedback as the averager holds it (one entry per element; empty: zeros). The
  /// round's updated one comes back in average_outcome::residual; a failed round returns none,
  /// so what a round drops is sent in a later one, never lost.
  std::vector<float> residual;
  /// Compressors (actors/compressor.hpp) that code this round's chunks (at least one).
  std::vector<compressor_actor> compressors;
  /// Receives the average_outcome when the round ends (round_result::failed when it could not
  /// finish), and after a finished round `(link_rate_atom, download_bytes, download_seconds,
  /// upload_bytes, upload_rate)`: what the round measured of this peer's link.
  round_owner reply_to;
  /// Membership, told `(alive_atom, peer_id)` when chunks arrive from a member: they prove it
  /// alive, while its heartbeats wait behind its chunks on the same connection (null: not told).
  liveness_sink membership;
  /// Fault injection for tests (config [debug]): kill this process mid-round as a sender or a
  /// reducer, or send chunks full of NaN.
  enum class fault : uint8_t { none, die_as_sender, die_as_reducer };
  fault inject = fault::none;
  bool corrupt_chunks = false;
  /// debug.byzantine = "scaled_values": the values sent to reducers are multiplied by this
  /// (finite, so they pass validation; 0: not).
  float scale_chunks = 0;
  /// debug.byzantine = "lying_reducer": the results of this peer's part go out negated (every
  /// member gets the same, so digests agree; only an audit can tell).
  bool lie_as_reducer = false;
  /// debug.byzantine = "false_accuser": an audit that finds the reducer honest accuses it anyway,
  /// with one input of its proof altered.
  bool accuse_falsely = false;
  /// Signs our chunks and keeps the evidence of our part for auditors (null: neither).
  std::shared_ptr<const peer_key> key;
  /// Refuse chunks for our part that their sender did not sign.
  bool check_signatures = false;
  /// The chance that this peer audits one other reducer of a finished round (0: never).
  double audit_probability = 0;
  /// Seeds this group's private draw of whether and whom to audit.
  uint64_t audit_seed = 0;
};

/// Spawns a group actor waiting for its assignment: `(group_assignment)` starts the round.
/// Remote group actors send it `(chunk_atom, allreduce_chunk)`, `(digest_atom, round_digest)` and
/// `(audit_atom, audit_request | audit_evidence | audit_accusation)`.
averaging_group_actor spawn_averaging_group(caf::actor_system& system,
                                             averaging_group_options options);

} // namespace ddactor
