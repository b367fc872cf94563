// Chunking, checksums, validation and assembly of a state transfer; see state_transfer.hpp.
#include "runtime/state_transfer.hpp"

#include <algorithm>
#include <cstring>
#include <stdexcept>

#include "runtime/tensor_blob.hpp"

namespace ddactor {

namespace {

// Spreads the chunk index over all 64 bits before it meets the digest (odd, so a bijection).
constexpr uint64_t index_multiplier = 0x9e3779b97f4a7c15ull;

} // namespace

uint64_t state_chunk_count(uint64_t total_bytes, uint64_t chunk_bytes) noexcept {
  if (chunk_bytes == 0)
    return 0;
  return total_bytes / chunk_bytes + (total_bytes % chunk_bytes != 0 ? 1 : 0);
}

state_manifest make_state_manifest(std::span<const char> bytes, int64_t epoch,
                                   std::string swarm_id, uint64_t chunk_bytes) {
  if (chunk_bytes == 0)
    throw std::invalid_argument("state chunk size must be positive");
  state_manifest manifest;
  manifest.swarm_id = std::move(swarm_id);
  manifest.epoch = epoch;
  manifest.total_bytes = bytes.size();
  manifest.chunk_bytes = chunk_bytes;
  manifest.chunk_count = state_chunk_count(bytes.size(), chunk_bytes);
  manifest.digest = blob_checksum(bytes);
  return manifest;
}

uint64_t state_chunk_checksum(uint64_t digest, uint64_t index,
                              std::span<const char> bytes) noexcept {
  return blob_checksum(bytes, digest ^ (index * index_multiplier + 1));
}

state_chunk_range chunk_range(const state_manifest& manifest, uint64_t index) noexcept {
  state_chunk_range range;
  range.offset = index * manifest.chunk_bytes;
  range.size = std::min(manifest.chunk_bytes, manifest.total_bytes - range.offset);
  return range;
}

std::optional<std::string> validate_state_manifest(const state_manifest& manifest,
                                                   const state_limits& limits) {
  if (manifest.chunk_bytes == 0)
    return "state manifest has a chunk size of 0";
  if (manifest.chunk_bytes > limits.max_chunk_bytes)
    return "state manifest chunk size " + std::to_string(manifest.chunk_bytes) +
           " exceeds the limit of " + std::to_string(limits.max_chunk_bytes) + " bytes";
  if (manifest.total_bytes > limits.max_total_bytes)
    return "state of " + std::to_string(manifest.total_bytes) + " bytes exceeds the limit of " +
           std::to_string(limits.max_total_bytes) + " bytes";
  const uint64_t expected = state_chunk_count(manifest.total_bytes, manifest.chunk_bytes);
  if (manifest.chunk_count != expected)
    return "state manifest claims " + std::to_string(manifest.chunk_count) + " chunks, but " +
           std::to_string(manifest.total_bytes) + " bytes in chunks of " +
           std::to_string(manifest.chunk_bytes) + " make " + std::to_string(expected);
  if (manifest.epoch < 0)
    return "state manifest has a negative epoch " + std::to_string(manifest.epoch);
  return std::nullopt;
}

std::optional<std::string> validate_state_chunk(const state_chunk& chunk,
                                                const state_manifest& manifest, uint64_t index) {
  if (index >= manifest.chunk_count)
    return "chunk " + std::to_string(index) + " asked for is out of range (" +
           std::to_string(manifest.chunk_count) + " chunks)";
  if (chunk.digest != manifest.digest)
    return "chunk " + std::to_string(index) + " belongs to state " + std::to_string(chunk.digest) +
           ", not " + std::to_string(manifest.digest);
  if (chunk.index != index)
    return "got chunk " + std::to_string(chunk.index) + " for a request of chunk " +
           std::to_string(index);
  const auto range = chunk_range(manifest, index);
  if (chunk.bytes.size() != range.size)
    return "chunk " + std::to_string(index) + " has " + std::to_string(chunk.bytes.size()) +
           " bytes, expected " + std::to_string(range.size);
  if (state_chunk_checksum(chunk.digest, chunk.index, chunk.bytes) != chunk.checksum)
    return "chunk " + std::to_string(index) + " fails its checksum";
  return std::nullopt;
}

bool same_state_layout(const state_manifest& a, const state_manifest& b) noexcept {
  return a.digest == b.digest && a.total_bytes == b.total_bytes &&
         a.chunk_bytes == b.chunk_bytes && a.chunk_count == b.chunk_count;
}

state_assembly::state_assembly(state_manifest manifest)
  : manifest_(std::move(manifest)),
    bytes_(manifest_.total_bytes),
    present_(manifest_.chunk_count, false) {}

bool state_assembly::accept(const state_chunk& chunk) {
  if (has(chunk.index))
    return false;
  const auto range = chunk_range(manifest_, chunk.index);
  if (range.size > 0)
    std::memcpy(bytes_.data() + range.offset, chunk.bytes.data(), range.size);
  present_[chunk.index] = true;
  ++chunks_present_;
  bytes_present_ += range.size;
  return true;
}

std::optional<uint64_t> state_assembly::next_missing(uint64_t from) const noexcept {
  for (uint64_t i = from; i < present_.size(); ++i)
    if (!present_[i])
      return i;
  return std::nullopt;
}

bool state_assembly::digest_matches() const noexcept {
  return blob_checksum(bytes_) == manifest_.digest;
}

std::shared_ptr<const std::vector<char>> state_assembly::release() {
  auto out = std::make_shared<const std::vector<char>>(std::move(bytes_));
  bytes_.clear();
  present_.assign(present_.size(), false);
  chunks_present_ = 0;
  bytes_present_ = 0;
  return out;
}

} // namespace ddactor
