#pragma once
// What the members of an all-reduce round send each other (runtime/allreduce/butterfly_round.hpp
// makes and reads them): plain data, free of CAF, so that the round's state machine and the swarm
// simulator use them as they are. Their inspect() overloads, for the wire, are in
// runtime/swarm_messages.hpp.

#include <cstdint>

#include "runtime/allreduce/chunk_signature.hpp"
#include "runtime/tensor_blob.hpp"

namespace ddactor {

/// The two steps of a butterfly round: values to their part's reducer, results to everyone.
enum class allreduce_phase : uint8_t { scatter = 0, gather = 1 };

/// One chunk of an all-reduce: a sender's part for the reducer (scatter), or a reducer's result
/// for everyone (gather). `member_set` is the bitmask of group members still in the round: when
/// a member fails, the survivors restart the round without it.
struct allreduce_chunk {
  uint64_t round_id = 0;
  uint64_t member_set = 0;
  uint8_t phase = 0;
  uint32_t sender = 0;
  tensor_blob blob;
  /// The sender's signature of a scatter chunk (chunk_signature.hpp); empty on results.
  chunk_proof proof;
};

/// Digest of a member's result, exchanged to prove that every member applies the same update.
struct round_digest {
  uint64_t round_id = 0;
  uint64_t member_set = 0;
  uint32_t sender = 0;
  uint64_t digest = 0;
  /// How the sender received the recipient's chunks: bytes, and bytes per second between the
  /// first and the last (0: too few to say). The recipient's upload rate, seen from the far end.
  uint64_t received_bytes = 0;
  double received_rate = 0;
};

/// An auditor asks a reducer for the inputs it reduced in attempt `member_set` (the one the
/// auditor finished in; reducer_audit.hpp) for the pieces of its part at `offsets` (a few,
/// picked at random: the reducer cannot know which beforehand); `requester` is the auditor's
/// index in the assignment, checked against the node the request came from.
struct audit_request {
  uint64_t round_id = 0;
  uint32_t requester = 0;
  uint64_t member_set = 0;
  std::vector<uint64_t> offsets;
};

/// The most pieces one audit request may name.
inline constexpr std::size_t max_audited_pieces = 16;

/// One input a reducer reduced: `sender`'s chunk of the reducer's part as it arrived, with the
/// sender's signature (the reducer's own values under its own). A reducer answers an audit
/// request with one of these per piece and member of the round's last attempt.
struct audit_evidence {
  uint64_t round_id = 0;
  uint64_t member_set = 0;
  uint32_t sender = 0;
  tensor_blob blob;
  chunk_proof proof;
};

/// An auditor found `reducer`'s result of round `round_id` wrong and tells the other members,
/// who check for themselves before they believe it: with `proof` (the inputs that disproved the
/// result, each signed by its sender; reducer_audit.hpp) against the result they applied, or,
/// when it is empty (the reducer's evidence was refused, which cannot be shown to others) or of
/// another attempt, by auditing the reducer.
struct audit_accusation {
  uint64_t round_id = 0;
  uint32_t reducer = 0;
  uint32_t accuser = 0;
  std::vector<audit_evidence> proof;
};

} // namespace ddactor
