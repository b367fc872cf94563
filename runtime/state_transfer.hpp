#pragma once
// The plain rules of a state transfer (a late joiner downloading the swarm's shared training state
// from a peer), kept apart from the actors that move the messages (actors/state_server,
// actors/state_download) so they can be tested alone:
//
//   - how a state of N bytes is cut into chunks, and its manifest;
//   - the checksum of one chunk, bound to the state's digest and the chunk's index, so a chunk of
//     another state or another position never passes for the one asked for;
//   - validation of manifests and chunks that arrive from the network, before anything is
//     allocated or copied on their word;
//   - state_assembly: the buffer a download fills, chunk by chunk, in any order, and which chunks
//     it still lacks (what a resume from another peer fetches).
//
// Integrity, not authenticity: checksums are blob_checksum (fast, not cryptographic).

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "runtime/swarm_messages.hpp"

namespace ddactor {

/// Bounds on what a downloader accepts from the network.
struct state_limits {
  /// Largest state it will allocate (the manifest's total_bytes).
  uint64_t max_total_bytes = uint64_t{16} << 30;
  /// Largest chunk it accepts (the manifest's chunk_bytes).
  uint64_t max_chunk_bytes = uint64_t{64} << 20;
};

/// Number of chunks of `chunk_bytes` (> 0) that hold `total_bytes`: the last one may be short;
/// an empty state has no chunk.
uint64_t state_chunk_count(uint64_t total_bytes, uint64_t chunk_bytes) noexcept;

/// The manifest of `bytes` cut into chunks of `chunk_bytes` (> 0; throws std::invalid_argument
/// otherwise). Hashes all of `bytes` once (the digest).
state_manifest make_state_manifest(std::span<const char> bytes, int64_t epoch,
                                   std::string swarm_id, uint64_t chunk_bytes);

/// blob_checksum of one chunk's bytes, seeded with the state's digest and the chunk's index.
uint64_t state_chunk_checksum(uint64_t digest, uint64_t index, std::span<const char> bytes) noexcept;

/// Byte range of a chunk inside the state. Precondition: the manifest is valid and index <
/// chunk_count.
struct state_chunk_range {
  uint64_t offset = 0;
  uint64_t size = 0;
};
state_chunk_range chunk_range(const state_manifest& manifest, uint64_t index) noexcept;

/// Why a manifest from the network must be refused, or nothing: chunk_bytes in (0,
/// max_chunk_bytes], total_bytes <= max_total_bytes, chunk_count consistent with both, epoch not
/// negative. Says nothing about swarm id or epoch wanted (the downloader's choice).
std::optional<std::string> validate_state_manifest(const state_manifest& manifest,
                                                   const state_limits& limits);

/// Why a chunk that answers a request for chunk `index` of `manifest` (validated) must be
/// refused, or nothing: digest and index as asked, size as the range says, checksum right.
/// Reads only the chunk's own vector.
std::optional<std::string> validate_state_chunk(const state_chunk& chunk,
                                                const state_manifest& manifest, uint64_t index);

/// Whether chunks of `a` can fill a download of `b`: same digest, size and chunking.
bool same_state_layout(const state_manifest& a, const state_manifest& b) noexcept;

/// The state being downloaded: a buffer of total_bytes and which chunks are in it.
/// Not thread-safe (one download actor owns it).
class state_assembly {
 public:
  /// Allocates manifest.total_bytes. Precondition: validate_state_manifest accepted it.
  explicit state_assembly(state_manifest manifest);

  const state_manifest& manifest() const noexcept { return manifest_; }
  bool has(uint64_t index) const noexcept { return index < present_.size() && present_[index]; }
  uint64_t chunks_present() const noexcept { return chunks_present_; }
  uint64_t bytes_present() const noexcept { return bytes_present_; }
  bool complete() const noexcept { return chunks_present_ == manifest_.chunk_count; }

  /// Copies a chunk into place. Precondition: validate_state_chunk accepted it for its index.
  /// A chunk already present is ignored; returns whether it was new.
  bool accept(const state_chunk& chunk);

  /// The first missing chunk at or after `from`, or nothing.
  std::optional<uint64_t> next_missing(uint64_t from) const noexcept;

  /// Whether the assembled bytes hash to the manifest's digest. Precondition: complete().
  bool digest_matches() const noexcept;

  /// Hands the bytes out; the assembly is empty afterwards.
  std::shared_ptr<const std::vector<char>> release();

 private:
  state_manifest manifest_;
  std::vector<char> bytes_;
  std::vector<bool> present_;
  uint64_t chunks_present_ = 0;
  uint64_t bytes_present_ = 0;
};

} // namespace ddactor
