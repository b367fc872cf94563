#pragma once
// The state server actor: holds the latest shared training state of its peer (parameters,
// optimizer state and epoch, encoded by the peer as one opaque byte buffer) and serves it, chunk
// by chunk, to peers that join late (actors/state_download). It runs detached, on its own thread,
// because hashing and copying tens of megabytes must never hold up CAF's scheduler.
//
//   local:  (put, shared_bytes, int64_t epoch, std::string swarm_id) -> state_manifest
//   remote: (state, std::string swarm_id, int64_t min_epoch)         -> state_manifest | error
//           (state, uint64_t digest, uint64_t chunk_index)           -> state_chunk    | error
//
// A manifest request for an epoch newer than the current state waits (at most
// options.manifest_wait) for a put that reaches it, then answers with the current state: peers of
// a swarm publish their state a moment apart, and a peer that needs the epoch it is at would
// otherwise find every source one epoch behind, again and again.
//
// Which states it keeps: the current one always; an older one only while a download uses it
// (a manifest or chunk request for it within options.retain_idle), and never more than
// options.max_states in all, the oldest dropped first. So a download that began before a new put
// can finish the state it began, however short the epochs, without the server holding every old
// state; the downloader then decides whether that state is recent enough. A chunk of a state no
// longer kept is refused with data_unavailable, and the downloader moves on to another peer.
//
// Errors (ddactor::errc, with a text that says what happened):
//   data_unavailable  no state put yet; chunk of a state no longer kept
//   invalid_message   another swarm id; chunk index out of range; a null buffer put

#include <chrono>
#include <cstdint>

#include "caf/all.hpp"

#include "runtime/message_types.hpp"

namespace ddactor {

/// The full interface: the remote one and the local put (and its own timer).
using state_server_actor = state_server_remote::extend<
  caf::replies_to<caf::put_atom, shared_bytes, int64_t /*epoch*/, std::string /*swarm_id*/>::with<
    state_manifest>,
  caf::reacts_to<tick_atom>>;

struct state_server_options {
  /// Bytes per chunk (> 0): bounds the size of one message and of what a download loses when its
  /// source dies. Downloaders refuse chunks over state_limits::max_chunk_bytes (64 MiB by default).
  uint64_t chunk_bytes = uint64_t{4} << 20;
  /// Pause before answering each chunk request. For tests (a download that is reliably in the
  /// middle when its source dies) and for crude throttling; 0 in production.
  std::chrono::milliseconds serve_delay{0};
  /// An older state is kept while it was used this recently (longer than a downloader's
  /// request timeout, so a slow download in progress is not cut off).
  std::chrono::milliseconds retain_idle{60'000};
  /// States kept at most, the current one included (>= 1); each costs its size in memory.
  uint32_t max_states = 3;
  /// How long a manifest request for a newer epoch than the current one may wait for it (shorter
  /// than the downloaders' request timeout).
  std::chrono::milliseconds manifest_wait{2'000};
};

/// Spawns a detached state server with no state yet. Throws std::invalid_argument when
/// chunk_bytes or max_states is 0.
state_server_actor spawn_state_server(caf::actor_system& system, state_server_options options = {});

} // namespace ddactor
