#pragma once
// Every message type and atom of ddactor, in one CAF type-ID block that every binary and test
// loads (through ddactor_system_config): a node without it hangs in remote_actor.
//
// Types that travel between peers are plain data with an inspect() overload and never hold a
// torch::Tensor (tensors cross the wire as tensor_blob bytes). Types marked "local only" carry
// pointers between actors of one process and are rejected by CAF's serializer by design.

#include <cstdint>
#include <map>
#include <set>
#include <memory>
#include <string>
#include <vector>

#include "caf/all.hpp"

#include "runtime/allreduce/chunk_coding.hpp"
#include "runtime/atoms.hpp"
#include "runtime/errors.hpp"
#include "runtime/round_result.hpp"
#include "runtime/state_quorum.hpp"
#include "runtime/swarm_messages.hpp"
#include "runtime/training_batch.hpp"

namespace ddactor {

struct safetensors_content;

/// Local only: a batch from the data loader to the trainer (shared, never copied).
struct batch_message {
  std::shared_ptr<const training_batch> batch;
};

/// Local only: a checkpoint's tensors and metadata, copied out of the model by the trainer so
/// that the checkpointer can write them while training goes on.
struct checkpoint_snapshot {
  std::shared_ptr<const safetensors_content> content;
  int64_t step = 0;
};

/// Local only: an immutable byte buffer shared between actors of one process, never copied
/// (the training state a state_server serves, see actors/state_server.hpp).
using shared_bytes = std::shared_ptr<const std::vector<char>>;

/// Local only: what a state download (actors/state_download.hpp) hands its requester.
struct state_download_result {
  /// The state's bytes; their blob_checksum is manifest.digest.
  shared_bytes bytes;
  /// The manifest of the state downloaded (swarm id, epoch, digest, chunking).
  state_manifest manifest;
  /// Chunks accepted into the state, from all sources (chunk_count when nothing was discarded).
  uint64_t chunks_fetched = 0;
  /// Accepted chunks thrown away because the download had to start over with another state.
  uint64_t chunks_discarded = 0;
  /// Chunks refused (bad checksum, size, index or digest) and fetched again elsewhere.
  uint64_t chunks_rejected = 0;
  /// Times the download went on with another source serving the same state (missing chunks only).
  uint32_t resumes = 0;
  /// Times it started over because the next source served another state.
  uint32_t restarts = 0;
  /// Chunks accepted from each candidate, indexed like state_download_options::candidates.
  std::vector<uint64_t> chunks_per_candidate;
};

/// Told that a round it applied is to be discarded: an audit proved that a reducer of it lied
/// (the trainer, which then goes back to its state from before the round).
using round_discard_sink =
  caf::typed_actor<caf::reacts_to<discard_atom, uint64_t /*round_id*/, std::string /*why*/>>;

/// Local only: the trainer's vector for a round (gradients, parameters or a pseudo-gradient)
/// and the samples behind it.
struct average_request {
  int64_t epoch = 0;
  std::shared_ptr<const std::vector<float>> values;
  double weight = 0;
  /// Where the vector's tensors begin and end (ascending offsets, 0 first, size last), so that
  /// the adaptive codec can keep small tensors exact. May be null.
  std::shared_ptr<const std::vector<uint64_t>> tensor_bounds;
  /// Told when an audit proves this round's result (or a later one's) poisoned; may be null.
  round_discard_sink discard_to;
};

/// Local only: what came out of a round: the group's average, or (alone, failed) the peer's own
/// values, or (missed) nothing to apply.
struct average_outcome {
  uint64_t round_id = 0;
  std::shared_ptr<const std::vector<float>> values;
  int32_t group_size = 1;
  round_result result = round_result::alone;
  double seconds = 0;
  uint64_t bytes_sent = 0;
  uint64_t bytes_received = 0;
  /// Restarts of the all-reduce after a member failed.
  int32_t restarts = 0;
  /// Why the round ended without an average.
  std::string detail;
  /// Top-k's error feedback after a finished round (null: no top-k, or the round failed and the
  /// averager keeps the one it had). The averager keeps it; the trainer never sees it.
  std::shared_ptr<const std::vector<float>> residual;
  /// Members whose chunks failed validation in this round (ids): the averager leaves them out
  /// of its next rounds.
  std::vector<std::string> offenders;
  /// An audit may still prove a reducer of this round lied (actors/averaging_group.hpp): the
  /// trainer keeps what applying it changes until its next round, so that it can discard it.
  bool may_be_discarded = false;
  bool averaged() const { return result == round_result::averaged; }
};

/// Local only: what the progress actor tells the trainer about the swarm, every report interval.
struct swarm_progress {
  /// The highest epoch a quorum of live peers reached (ahead of ours: we fell behind); one
  /// peer's claim does not count (runtime/state_quorum.hpp).
  int64_t max_epoch = 0;
  /// The states a quorum vouches for: a downloaded state is taken only when it is one of them.
  vouched_states vouched;
  int32_t swarm_size = 1;
  double samples_per_second = 0;
  /// Estimated samples the swarm accumulated towards our epoch's target.
  double epoch_samples = 0;
  /// Other peers whose reports are fresh: 0 right after joining, until their reports arrive.
  int32_t peers_reported = 0;
  /// State servers of the other peers, best source first: peers holding the swarm's state
  /// before those that are resyncing themselves, each by reported epoch, highest first.
  std::vector<state_server_remote> state_servers;
  /// Every live peer that could serve a state is resyncing too, and this one has the lowest id
  /// among them: its own state becomes the swarm's (the others then take it).
  bool keep_own_state = false;
  /// Our weights differ from those most peers of our epoch hold (a split swarm; see
  /// runtime/state_agreement.hpp): download the state from one of `agreeing_servers`.
  bool diverged = false;
  std::vector<state_server_remote> agreeing_servers;
  /// Our epoch and digest when every fresh peer has reached that epoch and nothing is left to
  /// repair (progress_tracker::settled), else -1 and 0: after the last epoch, this peer may
  /// write its final weights and leave once they match its own.
  int64_t settled_epoch = -1;
  uint64_t settled_digest = 0;
};

/// Local only: the epoch each peer of the swarm reports (this one included), from the progress
/// actor to the averager, so that matchmaking counts and leads only the peers of an epoch.
struct peer_epochs {
  std::map<std::string, int64_t> by_peer;
  /// Peers that do not lead the epoch they are at (progress_report::may_lead), this one included.
  std::set<std::string> not_leading;
};

/// Local only: an averaging group's chunk job for a compressor (actors/compressor.hpp); `tag`
/// comes back with the compressor_result.
struct compressor_encode {
  uint64_t tag = 0;
  chunk_encode_job job;
};

/// Local only: see compressor_encode.
struct compressor_decode {
  uint64_t tag = 0;
  chunk_decode_job job;
};

/// Local only: what a compressor made of a job.
struct compressor_result {
  uint64_t tag = 0;
  coded_chunk chunk;
};

/// How often a peer's supervisor restarted each child.
struct supervision_report {
  int32_t trainer_restarts = 0;
  int32_t data_loader_restarts = 0;
  int32_t checkpointer_restarts = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, supervision_report& x) {
  return f(caf::meta::type_name("supervision_report"), x.trainer_restarts,
           x.data_loader_restarts, x.checkpointer_restarts);
}

} // namespace ddactor

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(ddactor::batch_message)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(ddactor::checkpoint_snapshot)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(ddactor::average_request)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(ddactor::average_outcome)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(ddactor::swarm_progress)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(ddactor::peer_epochs)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(ddactor::shared_bytes)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(ddactor::state_download_result)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(ddactor::compressor_encode)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(ddactor::compressor_decode)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(ddactor::compressor_result)

CAF_BEGIN_TYPE_ID_BLOCK(ddactor, caf::first_custom_type_id)
  CAF_ADD_TYPE_ID(ddactor, (ddactor::batch_message))
  CAF_ADD_TYPE_ID(ddactor, (ddactor::checkpoint_snapshot))
  CAF_ADD_TYPE_ID(ddactor, (ddactor::average_request))
  CAF_ADD_TYPE_ID(ddactor, (ddactor::average_outcome))
  CAF_ADD_TYPE_ID(ddactor, (ddactor::swarm_progress))
  CAF_ADD_TYPE_ID(ddactor, (ddactor::peer_epochs))
  CAF_ADD_TYPE_ID(ddactor, (ddactor::supervision_report))
  CAF_ADD_TYPE_ID(ddactor, (ddactor::peer_info))
  CAF_ADD_TYPE_ID(ddactor, (std::vector<ddactor::peer_info>))
  CAF_ADD_TYPE_ID(ddactor, (ddactor::swarm_member))
  CAF_ADD_TYPE_ID(ddactor, (std::vector<ddactor::swarm_member>))
  CAF_ADD_TYPE_ID(ddactor, (ddactor::progress_report))
  CAF_ADD_TYPE_ID(ddactor, (ddactor::round_request))
  CAF_ADD_TYPE_ID(ddactor, (ddactor::group_member))
  CAF_ADD_TYPE_ID(ddactor, (ddactor::group_assignment))
  CAF_ADD_TYPE_ID(ddactor, (ddactor::tensor_blob))
  CAF_ADD_TYPE_ID(ddactor, (ddactor::allreduce_chunk))
  CAF_ADD_TYPE_ID(ddactor, (ddactor::round_digest))
  CAF_ADD_TYPE_ID(ddactor, (ddactor::chunk_proof))
  CAF_ADD_TYPE_ID(ddactor, (ddactor::audit_request))
  CAF_ADD_TYPE_ID(ddactor, (ddactor::audit_evidence))
  CAF_ADD_TYPE_ID(ddactor, (ddactor::audit_accusation))
  CAF_ADD_TYPE_ID(ddactor, (ddactor::state_manifest))
  CAF_ADD_TYPE_ID(ddactor, (ddactor::state_chunk))
  CAF_ADD_TYPE_ID(ddactor, (ddactor::velocity_request))
  CAF_ADD_TYPE_ID(ddactor, (ddactor::generate_request))
  CAF_ADD_TYPE_ID(ddactor, (ddactor::shared_bytes))
  CAF_ADD_TYPE_ID(ddactor, (ddactor::state_download_result))
  CAF_ADD_TYPE_ID(ddactor, (ddactor::compressor_encode))
  CAF_ADD_TYPE_ID(ddactor, (ddactor::compressor_decode))
  CAF_ADD_TYPE_ID(ddactor, (ddactor::compressor_result))
CAF_END_TYPE_ID_BLOCK(ddactor)
