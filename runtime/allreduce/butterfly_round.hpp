#pragma once
// One member's side of one butterfly all-reduce round, as a plain state machine: events in
// (start, a chunk arrived, a chunk came back from coding, a member is gone, the deadline passed,
// a digest arrived), actions out (code this, send that, restarted, rejected, done, failed). No
// threads, no clocks, no CAF: the averaging-group actor (actors/averaging_group.hpp) adds timers,
// monitors, compressors, metrics and fault injection; the executable specification
// (butterfly_allreduce.hpp) and the tests drive the very same code with a simulated network.
//
// The algorithm, for the members M of the current attempt (at first the whole group): the vector
// is cut into |M| parts in proportion to the members' shares (bandwidth_shares.hpp); member i
// reduces part i. Scatter: every member sends its values of part i to member i, in chunks cut by
// the chunk policy (chunk_policy.hpp), and puts its own part into its own reducer. Reduce: as soon
// as every member's values of a piece of i's part are in, member i averages that piece
// (sum_j w_j x_j / sum_j w_j, in sender order: weighted_reduction.hpp), encodes it once, applies
// the decoded values locally and sends the very same blob to everyone (so lossy codecs still leave
// every member with the same bits), while the rest of its part still arrives. Gather: every member
// writes each part's result over its values. Done when every part is in.
//
//                 start
//                   |
//                   v            a member is gone / sent an invalid chunk / a chunk names a
//   +--------->  RUNNING  ---+   smaller member set: restart without it (the same average,
//   |   restart     |  |     |   of the survivors' values, weights renormalized, for everyone)
//   +---------------+  |     |
//                      |     +--(deadline, our own values will not encode, or the others
//                      |         dropped us)--> FAILED
//        every part in |
//                      v
//                    DONE --(every digest in, or the caller stops waiting)--> (caller leaves)
//
// Failure semantics, one for the product, the specification and the simulator:
//   * A member that fails -- it is gone (the caller's monitor says so), or it sent a chunk that
//     fails validation -- is dropped and the survivors restart the round without it. Every
//     survivor ends with the same average of the survivors' contributions, never a mixture of
//     attempts. Chunks carry the member set, so a survivor that has not yet noticed the failure
//     learns it from the first chunk of the new attempt and follows. Sets only shrink, and a
//     member that sees a set it is in moves to the intersection with its own: members that noticed
//     different failures (two that lost the link between them each drop the other) end in one
//     agreed set. A chunk of a larger set is stale and ignored, and so is any chunk from a member
//     we dropped (it has no say in our set); a chunk of a set without us means the others dropped
//     us: the round ends at once as `excluded` (the caller takes the swarm's next state) instead
//     of waiting for results that will not come. A member whose digest says it finished an
//     attempt we have since left counts as gone (finished): it takes no part in ours.
//   * A member that is gone after we received all of its data costs nothing (on a slow link we
//     may still be decoding the others' results when fast members leave): it is dropped only if
//     some of its data is missing once its chunks at the coders are decoded.
//   * A round that cannot finish fails at its deadline; the caller steps with its own values.
//   * Top-k's error feedback is the round's input (setup.residual) and part of its outcome
//     (round_done::residual): every attempt starts from the residual the round found, and a
//     failed round hands back nothing, so the caller keeps the residual it had.
//   * After DONE, members exchange a digest of their result; a mismatch means diverging replicas.
//     The digest also goes to the members the final set left out (unless known gone), so that
//     one whose link to a single member broke learns at once that the others went on without it.
//   * Reducers are accountable: with setup.signer every chunk of our values goes out signed
//     (chunk_signature.hpp) and, with check_signatures, a chunk for our part is refused unless
//     its sender signed it. With keep_evidence the reducer keeps what it reduced, so that after
//     DONE it can show an auditor (audit_evidence()) every input of its part, each signed by its
//     sender; audit_plan_for() gives an auditor what it needs to recompute another reducer's
//     part (reducer_audit.hpp).
//   * Weights are claims: a weight above max_weight_ratio times the median of the assignment's
//     weights is clipped to that bound before anything is reduced. Every member clips the same
//     assignment alike, so results stay identical, and one member claiming a huge batch cannot
//     outweigh the others.
//
// Determinism: parts are cut in integers, the reducer sums in sender order, and every coding is a
// pure function of its input, so the result depends only on the inputs and the member set of the
// last attempt, never on the order in which chunks arrive or come back from coding.

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "runtime/allreduce/butterfly_partition.hpp"
#include "runtime/allreduce/chunk_coding.hpp"
#include "runtime/allreduce/chunk_policy.hpp"
#include "runtime/allreduce/recycled_floats.hpp"
#include "runtime/allreduce/reducer_audit.hpp"
#include "runtime/allreduce/round_messages.hpp"
#include "runtime/allreduce/weighted_reduction.hpp"

namespace ddactor {

/// A member of the round as the leader's assignment describes it.
struct round_member {
  double weight = 0;        // its samples this epoch: its weight in the average
  uint64_t part_share = 1;  // its share of the vector to reduce; 0 reduces nothing
  std::string name;         // for messages (a short peer id); empty: "member <index>"
  std::string peer_id;      // whose signatures its chunks carry (check_signatures, audits)
};

struct round_setup {
  uint64_t round_id = 0;
  std::vector<round_member> members;  // ordered as assigned; at most 64
  uint32_t me = 0;                    // this member's index
  std::shared_ptr<const std::vector<float>> values;
  std::size_t chunk_elements = 262144;  // elements per chunk on the wire
  /// A weight above this multiple of the members' median weight is clipped to it (0: no bound).
  double max_weight_ratio = 0;
  /// How a reducer combines its part: the weighted mean or CenteredClip (centered_clip.hpp).
  aggregation_settings aggregation;
  chunk_policy policy;
  /// Top-k's error feedback as the round finds it: as long as `values` when the policy carries
  /// error feedback (zeros at first), else empty.
  std::vector<float> residual;
  /// Where the result is written and shared from, reusing one buffer across rounds (null: a new
  /// vector every round).
  std::shared_ptr<recycled_floats> output_buffers;
  /// Signs every chunk of our values (null: unsigned).
  std::shared_ptr<const peer_key> signer;
  /// Refuses a chunk for our part that its sender (members[].peer_id) did not sign.
  bool check_signatures = false;
  /// Keeps what our part was reduced from, for auditors (audit_evidence()).
  bool keep_evidence = false;
};

/// What a chunk at a coder is for.
enum class chunk_role : uint8_t {
  scatter_out,  // our values for another member's part: send the blob
  own_part,     // our values for our own part: into our reducer as the others will read them
  gather_out,   // our part's result: apply the decoded values and send the blob to everyone
  scatter_in,   // a member's values for our part: into our reducer
  gather_in,    // a member's result for its part: apply
};

/// Encode `job`; hand the result back with chunk_coded(tag, ...).
struct round_encode {
  uint64_t tag = 0;
  chunk_role role = chunk_role::scatter_out;
  uint32_t member = 0;  // the receiver (scatter_out), else us
  chunk_encode_job job;
};
/// Validate and decode `job`; hand the result back with chunk_coded(tag, ...).
struct round_decode {
  uint64_t tag = 0;
  uint32_t member = 0;  // the sender
  chunk_decode_job job;
};
/// Send `chunk` to member `to`.
struct round_send {
  uint32_t to = 0;
  allreduce_chunk chunk;
};
/// The round restarted among `member_set` (for logs and metrics).
struct round_restart {
  uint64_t member_set = 0;
  std::string why;
};
/// A chunk was refused. `sender` is the member it claims to come from (members' count when the
/// header names none); `reason` is a short metric label.
struct round_reject {
  uint32_t sender = 0;
  std::string reason;
  std::string detail;
};
/// A member's weight was clipped (for logs and metrics).
struct round_weight_clipped {
  uint32_t member = 0;
  double claimed = 0;
  double used = 0;
};
/// The round is done: every member of `member_set` holds `values`.
struct round_done {
  std::shared_ptr<const std::vector<float>> values;
  uint32_t group_size = 1;
  uint64_t member_set = 0;
  /// Members left out of `member_set` that are not known to be gone: they may still wait for
  /// results; the digest tells them the round went on without them. Send it to `member_set` and
  /// to these.
  uint64_t left_out = 0;
  uint64_t digest = 0;  // blob_checksum of the values' bytes
  std::vector<float> residual;  // top-k's error feedback after the round (empty without top-k)
};
/// A member's digest was compared with ours (once per member).
struct round_digest_checked {
  uint32_t sender = 0;
  bool matches = false;
  /// The sender finished in a set without us after our round had ended (it learned of a
  /// failure, say a cut link, that we had not): our results differ, and the swarm's state
  /// agreement repairs this member later.
  bool left_us_out = false;
};
/// The round failed; the caller steps with its own values and keeps its residual.
struct round_failure {
  /// excluded: the others go on without this member (they dropped it), so it has no result to
  /// wait for; the caller applies nothing and takes the swarm's next state (round_result::missed).
  enum class cause : uint8_t { invalid_setup, unencodable_values, deadline, excluded };
  cause why = cause::deadline;
  std::string detail;
};

/// The weights a round uses: each of `claimed` bounded by `max_ratio` times their median (the lower
/// median of an even count); 0: as claimed.
std::vector<double> bounded_weights(const std::vector<double>& claimed, double max_ratio);

using round_action =
  std::variant<round_encode, round_decode, round_send, round_restart, round_reject,
               round_weight_clipped, round_done, round_digest_checked, round_failure>;

class butterfly_round {
public:
  enum class status : uint8_t { idle, running, done, failed };

  explicit butterfly_round(round_setup setup);

  std::vector<round_action> start();
  std::vector<round_action> chunk_arrived(allreduce_chunk chunk);
  std::vector<round_action> chunk_coded(uint64_t tag, coded_chunk result);
  /// A member left: `finished` when its own round ended (its actor quit normally after its
  /// result), not when it crashed or its link broke. A member that sent us everything we need
  /// costs nothing; but where this member reduces no part, an unfinished departure restarts the
  /// round at once: the reducers miss that member's values, and a member without a part would
  /// hear of their restart only from results that never come.
  std::vector<round_action> member_gone(uint32_t member, bool finished = false);
  std::vector<round_action> deadline_passed();
  /// Another member's digest of its result: once done, compared with ours (round_digest_checked);
  /// while running, a digest of a set without us means the others finished without this member
  /// (round_failure, excluded), and one of an attempt we have left means its sender takes no
  /// part in ours (it is gone, finished).
  std::vector<round_action> digest_arrived(uint32_t sender, uint64_t member_set, uint64_t digest);

  /// Every input of our part in attempt `member_set`, one per piece and member, each signed by
  /// its sender (ours signed here on first use), once we reduced all of that attempt's part (an
  /// auditor asks for the attempt it finished in, which may be one we restarted from: a member
  /// that got all our results before we noticed a failure). Empty without keep_evidence, for an
  /// attempt we did not finish reducing, or when we reduce nothing.
  const std::vector<audit_evidence>& audit_evidence_of_our_part(uint64_t member_set);
  /// Once done: what an auditor of `reducer` (an index in the assignment) needs, with `result`
  /// the round's result as we applied it. Nothing when that member reduced no part of the last
  /// attempt or the round is not done among several members. Of this member's own part: what
  /// it needs to check a proof others hold against it.
  std::optional<audit_plan> audit_plan_for(uint32_t reducer,
                                           const std::vector<float>& result) const;
  /// Members of the last attempt, other than us, whose part is not empty (audit candidates).
  std::vector<uint32_t> reducers_of_last_attempt() const;

  status state() const noexcept { return state_; }
  /// Done, and some members' digests have not arrived yet.
  bool awaiting_digests() const noexcept { return state_ == status::done && digests_expected_; }
  uint32_t me() const noexcept { return setup_.me; }
  std::size_t group_size() const noexcept { return setup_.members.size(); }
  uint64_t member_set() const noexcept { return member_set_; }
  int32_t restarts() const noexcept { return restarts_; }
  /// Chunks this attempt sends to other members in the scatter phase.
  std::size_t scatter_chunks() const noexcept { return scatter_chunks_; }
  /// What the chunks sent so far would have taken as float32 (for the compression ratio).
  uint64_t float_bytes() const noexcept { return float_bytes_; }

private:
  struct pending_job {
    chunk_role role = chunk_role::scatter_out;
    uint64_t attempt = 0;
    uint32_t member = 0;
    uint32_t position = 0;    // the part's position in its attempt
    uint64_t offset = 0;      // within the part
    std::size_t piece_begin = 0;  // within the whole vector
    std::size_t elements = 0;
  };

  std::vector<round_action> take() { return std::exchange(out_, {}); }
  void fail(round_failure::cause why, std::string detail);
  void clip_weights();
  void start_attempt();
  void encode(chunk_role role, uint32_t member, uint32_t position, part_range piece,
              std::vector<float> values, chunk_codec codec, bool decode_back,
              bool error_feedback);
  void encode_view(uint32_t member, uint32_t position, part_range piece,
                   std::span<const float> view);
  accept_status accept_into_reducer(uint32_t position, uint64_t offset, std::vector<float> values,
                                    double weight);
  void reduce_ready_pieces();
  void apply_result(uint32_t position, uint64_t offset, const std::vector<float>& values);
  bool expected_result_piece(uint32_t position, uint64_t offset, std::size_t size);
  void finish_if_complete();
  void shrink_to(uint64_t set, const std::string& why);
  void reject(uint32_t sender, std::string reason, std::string detail);
  void settle_departures();
  bool has_everything_from(uint32_t member) const;
  std::size_t decoding_from(uint32_t member) const;
  void on_coded(const pending_job& job, coded_chunk& result);
  std::string member_name(uint32_t member) const;
  uint64_t all_members() const noexcept;

  round_setup setup_;
  status state_ = status::idle;
  std::vector<round_action> out_;
  uint64_t member_set_ = 0;
  uint64_t attempt_ = 0;
  int32_t restarts_ = 0;
  // The attempt in progress: members (indices into setup_.members) and their parts.
  std::vector<uint32_t> active_;
  std::vector<part_range> parts_;
  uint32_t my_position_ = 0;
  std::unique_ptr<part_reducer> reducer_;
  // The pieces of our part, and which are reduced and sent.
  std::vector<part_range> my_pieces_;
  std::vector<bool> piece_reduced_;
  std::size_t pieces_reduced_ = 0;
  std::vector<float> output_;
  std::vector<std::size_t> part_received_;  // elements of each part's result received
  // Each part's pieces (offsets within the part), as its reducer cuts them: a result must come
  // as exactly these pieces, each once.
  std::vector<std::vector<part_range>> part_pieces_;
  std::vector<std::vector<bool>> piece_arrived_;
  std::size_t parts_done_ = 0;
  // Top-k: the residual this attempt builds (every attempt starts from setup_.residual).
  std::vector<float> residual_;
  std::size_t scatter_chunks_ = 0;
  uint64_t float_bytes_ = 0;
  // Jobs out at the coders, by tag; a result whose attempt is over is dropped.
  uint64_t next_tag_ = 0;
  std::map<uint64_t, pending_job> pending_;
  // Members gone while some of their chunks were still being decoded.
  uint64_t departed_ = 0;
  uint64_t departed_unfinished_ = 0;
  uint64_t gone_ = 0;  // every member known to be gone: no digest will come from it
  uint64_t digest_ = 0;
  uint64_t digests_expected_ = 0;
  // keep_evidence: the inputs of our part, by attempt (member set; sets only shrink, so there are
  // a few at most).
  struct attempt_evidence {
    uint32_t position = 0;             // our part's position in the attempt
    std::size_t part_begin = 0;
    std::vector<audit_evidence> inputs;
    std::vector<part_range> own_raw;   // our own pieces taken raw: signed on first request
    bool complete = false;             // every piece of our part was reduced
  };
  std::map<uint64_t, attempt_evidence> evidence_;
  attempt_evidence* current_evidence_ = nullptr;
};

} // namespace ddactor
