#pragma once
// Checking a reducer's result after the round (the auditor's side; butterfly_round.hpp keeps the
// reducer's evidence). Digests catch a reducer that sends members different results, but not one
// that sends everyone the same wrong result (a negated average, say): every member then agrees
// on poison. So after a round a member may audit one other reducer: it asks for the inputs the
// reducer reduced -- every member's chunks of its part, each signed by its sender
// (chunk_signature.hpp), so the reducer cannot show made-up inputs -- recomputes the reduction
// with the round's own rules (weights as bounded, mean or CenteredClip, in sender order) and
// compares with the result it applied. An audit checks a few pieces of the part, picked at
// random (sample_pieces()): the reducer cannot know which, so a lie on a share f of its pieces is
// caught by each audit with a probability of at least f, while an audit costs the reducer the
// upload of a few chunks per member instead of its whole part's inputs.
//
// The comparison allows for the gather codec's own rounding and for float differences between
// builds (another compiler may sum in another order, and a quantized value may then land one step
// away): a piece passes when its distance from the recomputed values is at most twice the
// codec's own error on them, plus 1e-5 of their norm. A reducer can therefore shift its result by
// about the codec's rounding and no more. Its own values it may choose freely, as any member may
// send what it likes; with CenteredClip their pull is bounded like anyone else's.
//
// Evidence is hostile input like any chunk: a piece that is unsigned, signed by someone else,
// for another slot, undecodable or sent twice is refused (and makes the reducer's audit fail:
// an honest reducer only forwards what it verified on arrival).
//
// An auditor that finds a lie forwards the evidence with its accusation (a proof): every input
// in it is signed by its sender, not by the reducer, so another member of the round checks the
// proof against the result it applied itself (check_accusation_proof) without asking the liar,
// who could refuse to answer the members it knows were told. A proof that does not check out
// (pieces the part does not have, an input missing, forged or repeated) is the accuser's doing:
// an honest accuser forwards only inputs it verified.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "runtime/allreduce/butterfly_partition.hpp"
#include "runtime/allreduce/centered_clip.hpp"
#include "runtime/allreduce/chunk_policy.hpp"
#include "runtime/allreduce/round_messages.hpp"

namespace ddactor {

/// What an auditor knows of the round's last attempt and of the audited reducer's part.
struct audit_plan {
  uint64_t round_id = 0;
  uint64_t member_set = 0;
  uint32_t reducer = 0;                // its index in the assignment
  std::vector<uint32_t> senders;       // the attempt's members (assignment indices), in order
  std::vector<std::string> sender_ids; // their peer ids, in the same order
  std::vector<double> weights;         // their weights as the round used them
  uint32_t position = 0;               // the reducer's part's position in the attempt
  part_range part;                     // its elements in the whole vector
  std::vector<part_range> pieces;      // its pieces, as offsets within the part
  chunk_policy policy;
  aggregation_settings aggregation;
  std::vector<float> result;           // the part's result as this member applied it
};

struct audit_finding {
  bool honest = false;
  std::string detail;  // what was wrong (empty when honest)
};

class reducer_audit {
 public:
  explicit reducer_audit(audit_plan plan);

  /// Takes one piece of evidence. Returns why it is refused (the audit then fails), or nothing.
  std::optional<std::string> add(const audit_evidence& evidence);
  /// Whether `evidence` is for one of the pieces this audit checks (a reducer shows only those).
  bool wants(const audit_evidence& evidence) const;
  /// Every member's every piece is in.
  bool complete() const noexcept { return received_ == expected(); }
  std::size_t expected() const noexcept { return plan_.pieces.size() * plan_.senders.size(); }
  std::size_t received() const noexcept { return received_; }
  uint32_t reducer() const noexcept { return plan_.reducer; }
  uint64_t round_id() const noexcept { return plan_.round_id; }

  /// Once complete: recomputes every piece and compares it with the result.
  audit_finding verdict() const;
  /// The evidence accepted so far, in arrival order: once complete, the proof an accusation
  /// carries.
  const std::vector<audit_evidence>& evidence() const noexcept { return accepted_; }

 private:
  audit_plan plan_;
  std::vector<audit_evidence> accepted_;
  // Decoded inputs by [piece][sender position]; empty until it arrives.
  std::vector<std::vector<std::vector<float>>> inputs_;
  std::size_t received_ = 0;
};

/// `plan` with at most `count` of its pieces, picked by `seed` (in offset order).
audit_plan sample_pieces(audit_plan plan, std::size_t count, uint64_t seed);

/// What another member's accusation proof shows this member (check_accusation_proof).
struct proof_finding {
  enum class kind : uint8_t {
    confirmed,     // the inputs do not give the result this member applied: the reducer lied
    contradicted,  // they do (the reducer may have sent the accuser another result)
    refused,       // the proof itself is wrong: the accuser's doing
  };
  kind result = kind::refused;
  std::string detail;
};

/// Checks the inputs an accuser forwarded (audit_accusation::proof) against `plan`, this
/// member's own plan for the accused reducer, with the result it applied. The proof must hold,
/// for at most max_audited_pieces pieces of the part, every sender's signed input, once.
proof_finding check_accusation_proof(audit_plan plan, const std::vector<audit_evidence>& proof);

/// Whether `applied` is `reduced` sent through `codec`, allowing for the codec's rounding and for
/// float differences between builds (see the file comment).
bool matches_within_codec_error(const std::vector<float>& applied,
                                const std::vector<float>& reduced, const chunk_codec& codec,
                                double* distance = nullptr, double* allowed = nullptr);

} // namespace ddactor
