#pragma once
// A sender's signature on the chunk it sends a reducer, so that the reducer can later prove to an
// auditor what it reduced (runtime/allreduce/reducer_audit.hpp): without it, a reducer could show
// an auditor made-up inputs that fit its made-up result. The signature covers the round, the
// attempt's member set, the sender's index, the chunk's header (part, offset, shape, dtype, codec)
// and a BLAKE2b-256 of its bytes, under its own domain string, so a chunk signed for one round,
// attempt or reducer cannot be shown for another. The key travels with the chunk; its id must be
// the sender's in the assignment (peer_key.hpp derives ids from keys).

#include <cstdint>
#include <string>

#include "runtime/secure/peer_key.hpp"
#include "runtime/tensor_blob.hpp"

namespace ddactor {

/// Who signed a chunk, and how: raw 32-byte Ed25519 public key and 64-byte signature.
struct chunk_proof {
  std::string public_key;
  std::string signature;

  bool empty() const noexcept { return public_key.empty() && signature.empty(); }
};

/// Signs what `sender` sends in attempt `member_set` of round `round_id`.
chunk_proof sign_chunk(const peer_key& key, uint64_t round_id, uint64_t member_set,
                       uint32_t sender, const tensor_blob& blob);

/// Whether `proof` is `peer_id`'s signature of that chunk.
bool chunk_signed_by(const chunk_proof& proof, const std::string& peer_id, uint64_t round_id,
                     uint64_t member_set, uint32_t sender, const tensor_blob& blob);

} // namespace ddactor
