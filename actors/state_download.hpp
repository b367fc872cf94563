#pragma once
// One download of the swarm's shared training state by a peer that joins late or restarts: it
// asks candidate peers' state servers (actors/state_server) for a manifest, fetches the state
// chunk by chunk with a bounded number of requests in flight, verifies every chunk and the whole
// state, and goes on with the next candidate when its source fails. One detached actor per
// download (it hashes and copies megabytes); it owns the bytes until it hands them over.
//
//   spawn_state_download(system, options) -> download
//   requester --(get)--> download --> state_download_result | error   (then the download quits)
//   requester --(status)--> download --> (uint64_t bytes_present, uint64_t total_bytes)
//
// The download starts when spawned; the deadline runs from then. Send exactly one (get) request,
// at any time, with caf::infinite or a timeout longer than options.deadline: the download always
// answers by its deadline, keeps its outcome until asked, and quits after answering.
//
// Protocol with the candidates, in their order:
//
//        +--------------------------------------------------------------+
//        v                                                              |
//   [probing candidate i] --(state, swarm_id, min_epoch)--> manifest     |
//        |  refused, timeout, down, other swarm, epoch < min_epoch,      |
//        |  manifest invalid: note why, i + 1 ---------------------------+
//        |  manifest ok: same digest and chunking as the chunks held?
//        |     yes: resume (fetch the missing chunks only; counted)
//        |     no:  start over with this manifest (what was held is dropped)
//        v
//   [downloading from i] --(state, digest, k)--> chunk, at most chunks_in_flight at once
//        |  error, timeout, down_msg, or a bad chunk (rejected, counted): i + 1 (back to probing;
//        |  the chunks held stay)
//        |  all chunks held: whole digest right -> done; wrong -> drop all, i + 1
//        v
//   [done] state_download_result
//
// Each candidate is tried once. When none is left: error data_unavailable, with every
// candidate's reason; when options.deadline passes first: error peer_unreachable, with the
// progress and the reasons so far. The caller retries with a fresh candidate list from its
// membership view if it wants to.
//
// Everything from the network is validated before it is used (runtime/state_transfer.hpp):
// total_bytes and chunk_bytes against options.limits before anything is allocated, chunk_count
// against both, and each chunk's digest, index, size and checksum against what was asked.

#include <chrono>
#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "caf/all.hpp"

#include "runtime/message_types.hpp"
#include "runtime/state_transfer.hpp"

namespace ddactor {

/// Local only: its requester's interface.
using state_download_actor = caf::typed_actor<
  caf::replies_to<caf::get_atom>::with<state_download_result>,
  caf::replies_to<status_atom>::with<uint64_t /*bytes_present*/, uint64_t /*total_bytes*/>,
  caf::reacts_to<tick_atom>>;

struct state_download_options {
  /// Remote (or local) state servers, best first. Null handles are skipped.
  std::vector<state_server_remote> candidates;
  /// Only a state of this swarm is accepted.
  std::string swarm_id;
  /// Candidates serving an older epoch are skipped.
  int64_t min_epoch = 0;
  /// Manifest digests of states the caller refused before (no quorum vouched for them):
  /// candidates serving one are skipped.
  std::set<uint64_t> refused_digests;
  /// Chunk requests outstanding at once (at least 1): hides the round-trip time.
  uint32_t chunks_in_flight = 4;
  /// Limit for one manifest or chunk request; a source that misses it is dropped.
  std::chrono::milliseconds request_timeout{30'000};
  /// Limit for the whole download, from spawn to answer.
  std::chrono::milliseconds deadline{30 * 60'000};
  /// What a manifest may claim (total bytes, chunk bytes).
  state_limits limits;
  /// How often progress (percent, MB/s) is logged at info level while chunks arrive.
  std::chrono::milliseconds progress_interval{5'000};
};

/// Spawns a detached download; it starts at once. See the file comment for its messages.
state_download_actor spawn_state_download(caf::actor_system& system,
                                          state_download_options options);

/// Blocking convenience: spawns a download, waits for its outcome (at most options.deadline plus
/// a grace second) and returns it. For code that has nothing else to do meanwhile (a peer that
/// cannot train before it has the state); not to be called from inside an actor's handler.
caf::expected<state_download_result> download_state(caf::actor_system& system,
                                                    state_download_options options);

} // namespace ddactor
