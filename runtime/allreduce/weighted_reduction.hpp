#pragma once
// The reducer's side of one butterfly part: collecting every sender's chunks of that part and
// computing their weighted average, sum_j w_j x_j / sum_j w_j, over the senders that delivered all
// of it.
//
// Why the result does not depend on arrival order. Chunks from n senders arrive interleaved in any
// order, and floating-point addition is not associative: a running sum would give different bits for
// different orders, and so different models on different rounds of the same data. The reducer
// therefore keeps each sender's values as delivered (float32, so nothing is lost or rounded) and
// does all arithmetic in finish(): for every element it sums w_j * x_j in double, in ascending sender
// index, and divides once. The order of operations is fixed by the sender indices alone, so every
// arrival order gives bit-identical results. This also makes "leave a partial sender out" exact: its
// values are simply not summed, nothing has to be subtracted. The cost is memory: one float per
// element per sender, i.e. about one copy of the whole vector per peer, since part ≈ L/n and there
// are n senders. (An exact fixed-point "superaccumulator" per element would also be
// order-independent without per-sender storage, but needs ~40 bytes per element.) Chunks are kept
// as they arrive, and accept_shared() keeps the caller's buffer: nothing is copied again.
//
// Failure semantics. A sender is included only when it delivered every element of the part. A
// sender that delivered some chunks but not all (it died, its link broke, a chunk was corrupt) is
// left out entirely and the weights of the others are renormalized: the result is the weighted
// average of the complete senders. With no complete sender, finish() says so and the caller keeps its
// own values for the part. An empty part (a peer with bandwidth weight 0 reduces nothing) is trivially
// complete for every sender.
//
// Hostile input: a chunk can come from a faulty or malicious peer. accept() checks everything before
// touching memory and answers with a rejection code; it never reads or writes out of bounds, and a
// rejected chunk leaves the reducer unchanged (the sender may send a correct one later).
//
// Not thread-safe: one averaging-group actor owns a reducer.
#include "runtime/allreduce/butterfly_partition.hpp"
#include "runtime/allreduce/centered_clip.hpp"

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace ddactor {

// Thrown by part_reducer on a caller's misuse, and by accept_or_throw for a rejected chunk.
class reduction_error : public allreduce_error {
public:
  using allreduce_error::allreduce_error;
};

// What part_reducer::accept did with a chunk. Everything but `accepted` leaves the reducer unchanged.
enum class accept_status : std::uint8_t {
  accepted,         // stored; counts towards the sender's completeness
  unknown_sender,   // sender_index >= expected_senders
  empty_chunk,      // no values: carries nothing, and a part is never sent as empty chunks
  outside_part,     // chunk_offset + values.size() runs past the end of the part
  bad_weight,       // weight is not finite or not > 0
  weight_changed,   // weight differs from the one on this sender's earlier chunks
  duplicate_chunk,  // overlaps elements this sender already delivered
  non_finite_value, // a NaN or an infinity among the values
};

std::string_view to_string(accept_status status) noexcept;

// The outcome of a part: the average, and who is in it.
struct reduction_result {
  // part_length averaged values; empty when no sender is included (or the part is empty).
  std::vector<float> values;
  // Senders whose whole part went into the average, ascending.
  std::vector<std::size_t> included_senders;
  // Sum of the included senders' weights (0 for an empty part, whose senders never send a weight).
  double total_weight = 0.0;

  // False when no sender delivered the whole part: the caller keeps its own values.
  bool has_average() const noexcept { return !included_senders.empty(); }
};

class part_reducer {
public:
  // Throws reduction_error when expected_senders is 0. `aggregation` centered_clip replaces the
  // weighted mean of each range (and of finish()) by CenteredClip (centered_clip.hpp).
  part_reducer(std::size_t part_length, std::size_t expected_senders,
               aggregation_settings aggregation = {});

  // Takes values for elements [chunk_offset, chunk_offset + values.size()) of the part, from the
  // given sender with its weight (its sample count this epoch; the same on all of its chunks).
  // Chunks may arrive in any order and have any sizes, as long as one sender's chunks don't overlap.
  accept_status accept(std::size_t sender_index, std::size_t chunk_offset,
                       std::span<const float> values, double weight);
  // accept() without a copy: the reducer keeps `owner` alive and reads `values`, which must lie in
  // storage that `owner` holds and that nobody changes while the reducer lives.
  accept_status accept_shared(std::size_t sender_index, std::size_t chunk_offset,
                              std::shared_ptr<const void> owner, std::span<const float> values,
                              double weight);

  // accept(), throwing reduction_error with the reason and the chunk's coordinates on rejection.
  void accept_or_throw(std::size_t sender_index, std::size_t chunk_offset,
                       std::span<const float> values, double weight);

  // True when every expected sender delivered its whole part: nothing more can arrive.
  bool complete() const noexcept;
  // True when this sender delivered its whole part. Throws reduction_error for an unknown sender.
  bool sender_complete(std::size_t sender_index) const;
  // Elements this sender delivered so far. Throws reduction_error for an unknown sender.
  std::size_t delivered_elements(std::size_t sender_index) const;

  std::size_t part_length() const noexcept { return part_length_; }
  std::size_t expected_senders() const noexcept { return senders_.size(); }

  // The weighted average over the senders that delivered their whole part (see the file comment).
  // May be called at any time, e.g. when the round's deadline passes before complete().
  reduction_result finish() const;

  // True when every sender delivered elements [begin, end).
  bool range_complete(std::size_t begin, std::size_t end) const;
  // The average of elements [begin, end) over every sender, once range_complete(begin, end): the
  // very values finish() computes there when every sender completes, so a reducer can send each
  // range as soon as it is in (pipelining the gather with the scatter). Throws reduction_error
  // when the range is not complete.
  std::vector<float> average_of_range(std::size_t begin, std::size_t end) const;

private:
  // A run of a sender's values as it arrived, and what keeps its storage alive.
  struct stored_chunk {
    std::shared_ptr<const void> owner;
    std::span<const float> values;
  };
  struct sender_state {
    double weight = 0.0;           // 0 until the first accepted chunk
    std::size_t delivered = 0;     // elements received
    std::map<std::size_t, stored_chunk> chunks;  // by offset within the part; disjoint
    std::map<std::size_t, std::size_t> received; // disjoint [begin, end) runs, adjacent ones merged
  };

  accept_status check(std::size_t sender_index, std::size_t chunk_offset,
                      std::span<const float> values, double weight) const;
  bool overlaps_received(const sender_state& sender, std::size_t begin, std::size_t end) const;
  void record_received(sender_state& sender, std::size_t begin, std::size_t end);
  // Calls f(segment_begin, segment_end, values) over [begin, end) cut where any of `senders`
  // changes chunks; values[k] points at senders[k]'s value at segment_begin. The range must be
  // complete for every one of them.
  template <class Segment>
  void for_each_segment(const std::vector<std::size_t>& senders, std::size_t begin,
                        std::size_t end, Segment&& f) const;

  // The weighted mean of [begin, end) over `senders` (indices, ascending): finish()'s arithmetic.
  std::vector<float> weighted_mean(const std::vector<std::size_t>& senders, std::size_t begin,
                                   std::size_t end) const;
  // CenteredClip of [begin, end) over `senders` (indices, ascending).
  std::vector<float> clipped(const std::vector<std::size_t>& senders, std::size_t begin,
                             std::size_t end) const;

  std::size_t part_length_;
  aggregation_settings aggregation_;
  std::vector<sender_state> senders_;
  std::size_t complete_senders_ = 0;
};

} // namespace ddactor
