#pragma once
// One peer's side of one averaging round: a butterfly all-reduce among the members of a group
// (runtime/allreduce/butterfly_allreduce.hpp is its executable specification).
//
// The averager spawns one group actor per round *before* matchmaking ends and offers its handle
// to the leader; the leader's assignment names every member's group actor, so chunks go from
// group actor to group actor directly. Chunks are encoded and decoded by the averager's
// compressor actors, several at once, while this actor sends, receives and reduces: a chunk goes
// out as soon as it is encoded, and is reduced as soon as it is decoded. Detached: reducing
// megabytes never blocks CAF's scheduler.
//
//   WAITING --(assignment)--> SCATTER/REDUCE --(all parts back)--> DONE --(digests in)--> quit
//      |                        |      ^
//      |                        |      | a member fails (down, bad chunk) or a chunk names a
//      |                        +------+ smaller member set: restart without it
//      +--(deadline)--> FAILED (round_timeout to the averager)          any state --(deadline)-->
//
// Parts: member i of an attempt reduces a part proportional to its share in the assignment
// (the leader's cut by link rates, runtime/allreduce/bandwidth_shares.hpp); a member with share
// 0 only sends and receives.
//
// Failure semantics (chosen on purpose):
//   * Any member that fails -- dies, disconnects, or sends a chunk that fails validation -- is
//     dropped, and the survivors restart the all-reduce without it: every survivor still ends with
//     the same average (of the survivors' contributions, weights renormalized), never a mixture.
//     Chunks carry the member set, so a survivor that has not yet noticed the failure learns it
//     from the first chunk of the new attempt.
//   * The whole round is bounded by its deadline; a round that cannot finish fails, and the
//     caller steps with its own values.
//   * After a successful round members exchange a digest of their result; a mismatch is logged
//     and counted (it would mean diverging replicas).

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "caf/all.hpp"

#include "runtime/compression/tensor_codec.hpp"
#include "runtime/message_types.hpp"

namespace ddactor {

struct averaging_group_options {
  /// Values this peer contributes, and their weight (samples).
  std::shared_ptr<const std::vector<float>> values;
  double weight = 0;
  /// Elements per chunk on the wire.
  size_t chunk_elements = 262144;
  /// The round's deadline, counted from the assignment.
  std::chrono::milliseconds timeout{60000};
  /// Codec for chunks ("none", "fp16", "bf16", "int8", "topk", "adaptive") and its options.
  /// Top-k keeps its error feedback in `residual` (one entry per element, owned by the averager
  /// across rounds), so what a round drops is sent in a later one, never lost. Every attempt of
  /// a round starts from the residual the round found, and a failed round leaves it as found.
  /// Adaptive sends a tensor exactly when it has fewer than codec_settings.adaptive_exact_below
  /// elements (`tensor_bounds` says where tensors are) and int8 otherwise.
  std::string codec = "none";
  codec_options codec_settings;
  std::shared_ptr<std::vector<float>> residual;
  std::shared_ptr<const std::vector<uint64_t>> tensor_bounds;
  /// Compressors (actors/compressor.hpp) that code this round's chunks (at least one).
  std::vector<caf::actor> compressors;
  /// Receives the average_outcome when the round ends (round_result::failed when it could not
  /// finish), and after a finished round `(link_rate_atom, download_bytes, download_seconds,
  /// upload_bytes, upload_rate)`: what the round measured of this peer's link.
  caf::actor reply_to;
  /// Membership, told `(alive_atom, peer_id)` when chunks arrive from a member: they prove it
  /// alive, while its heartbeats wait behind its chunks on the same connection (null: not told).
  caf::actor membership;
  /// Fault injection for tests (config [debug]): kill this process mid-round as a sender or a
  /// reducer, or send chunks full of NaN.
  enum class fault : uint8_t { none, die_as_sender, die_as_reducer };
  fault inject = fault::none;
  bool corrupt_chunks = false;
};

/// Spawns a group actor waiting for its assignment: `(group_assignment)` starts the round.
/// Remote group actors send it `(chunk_atom, allreduce_chunk)` and `(digest_atom, round_digest)`.
caf::actor spawn_averaging_group(caf::actor_system& system, averaging_group_options options);

} // namespace ddactor
