#pragma once
// Butterfly all-reduce: the executable specification of one averaging round, as a deterministic
// single-process simulation over plain data structures. The averaging-group actor follows the same
// steps with real messages; this file says what the result must be, including under failures.
//
// Algorithm (n peers, each with a float32 vector x_j of L elements and a weight w_j, its samples
// this epoch):
//   0. Every peer computes the same partition of [0, L) into parts P_0 .. P_{n-1}, sizes
//      proportional to bandwidth weights (butterfly_partition). Peer i reduces part P_i.
//   1. Scatter-reduce: every peer j sends its slice x_j[P_i] to peer i, for every i != j, in chunks
//      of chunk_elements (its own slice x_i[P_i] stays local). Peer i validates each chunk and
//      hands it to a part_reducer, which computes avg(P_i) = sum_j w_j x_j[P_i] / sum_j w_j over
//      the senders that delivered their whole slice.
//   2. All-gather: peer i sends avg(P_i), in chunks, to every other peer; every peer writes it
//      over its own values of P_i. All peers end with the same bits.
//
//                 part P0           part P1           part P2
//     peer 0    x0[P0] (local)    x0[P1] --> 1      x0[P2] --> 2
//     peer 1    x1[P0] --> 0      x1[P1] (local)    x1[P2] --> 2
//     peer 2    x2[P0] --> 0      x2[P1] --> 1      x2[P2] (local)
//                   |                 |                 |
//               0 reduces P0      1 reduces P1      2 reduces P2
//                   |                 |                 |
//     all-gather    +--> 1, 2         +--> 0, 2         +--> 0, 1
//
//     every peer ends with  [ avg(P0) | avg(P1) | avg(P2) ]
//
// Steps and bytes on the wire (float32 payload, headers not counted), with p_i = |P_i|:
//   * 2 communication steps (scatter, gather), each streamed as ceil(p / chunk_elements) chunk
//     messages per part, so compression, transfer and reduction can overlap.
//   * Peer i sends (L - p_i) + (n - 1) p_i elements and receives the same amount. With equal parts
//     p_i = L/n this is 2 (n-1)/n * L elements each way, the bandwidth-optimal amount, the same as a
//     ring all-reduce but in 2 steps instead of 2 (n-1): latency matters more than hops over the
//     internet. Unequal rounding of the parts moves peer i's total by (n-2) |p_i - L/n| elements,
//     less than n-2 elements with equal weights and alignment 1.
//
// Failure semantics:
//   * A sender that does not deliver its whole slice of P_i (it died, its link broke, a chunk was
//     corrupt or refused) is left out of avg(P_i) entirely and the weights of the others are
//     renormalized. It stays in every other part it delivered completely.
//   * A part with no complete sender is not averaged: every peer keeps its own values for it.
//   * A reducer that dies before returning its part: every surviving peer keeps its own values for
//     that part; all other parts are averaged as usual. (In this simulation a dead reducer dies after
//     the scatter-reduce, so its own slices reached the other reducers; a peer that dies earlier is
//     simulated by also making it a sender that delivers nothing.)
//   * The actor adds deadlines (averaging.allreduce_timeout): "did not deliver in time" is the same
//     as "did not deliver", so no peer waits forever on another.
//
// Determinism: the partition is computed in integers and the reducer sums in sender-index order, so
// the result depends only on the inputs, never on the order in which chunks arrive (the simulation
// can shuffle arrivals to prove it).
#include "runtime/allreduce/butterfly_partition.hpp"

#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <vector>

namespace ddactor {

struct allreduce_options {
  std::size_t chunk_elements = 65536;   // elements per message: 256 KiB of float32
  std::vector<double> bandwidth_weights; // one per peer; empty: equal parts
  std::size_t alignment = 1;            // part boundaries at multiples of this (codec blocks)
  std::uint64_t round_id = 0;           // stamped on every chunk; chunks of another round are refused
  std::uint64_t delivery_seed = 0;      // 0: chunks arrive in send order; else a seeded shuffle
};

// Failures to inject into a simulated round. Indices are peer indices in the group.
struct failure_plan {
  static constexpr std::size_t every_reducer = std::numeric_limits<std::size_t>::max();

  // `sender` delivers only its first `chunks` chunks of part `reducer` (0: nothing), or of every
  // part when reducer is every_reducer. Applies to the sender's own part too (a peer that withholds
  // its own values).
  struct truncated_delivery {
    std::size_t sender = 0;
    std::size_t reducer = every_reducer;
    std::size_t chunks = 0;
  };
  // The chunk with index `chunk` from `sender` to `reducer` arrives with one bit flipped.
  struct corrupted_chunk {
    std::size_t sender = 0;
    std::size_t reducer = 0;
    std::size_t chunk = 0;
  };

  std::vector<truncated_delivery> truncated;
  std::vector<corrupted_chunk> corrupted;
  std::vector<std::size_t> dead_reducers; // die after the scatter-reduce, before the all-gather

  failure_plan& sender_delivers_nothing(std::size_t sender) {
    truncated.push_back({sender, every_reducer, 0});
    return *this;
  }
  failure_plan& sender_delivers_first_chunks(std::size_t sender, std::size_t reducer,
                                             std::size_t chunks) {
    truncated.push_back({sender, reducer, chunks});
    return *this;
  }
  failure_plan& corrupt_chunk(std::size_t sender, std::size_t reducer, std::size_t chunk) {
    corrupted.push_back({sender, reducer, chunk});
    return *this;
  }
  failure_plan& reducer_dies(std::size_t reducer) {
    dead_reducers.push_back(reducer);
    return *this;
  }
};

enum class part_outcome : std::uint8_t {
  reduced,            // averaged over included_senders and returned to every surviving peer
  no_complete_sender, // nobody delivered the whole part: every peer kept its own values
  reducer_failed,     // the reducer died before returning it: every survivor kept its own values
};

struct part_status {
  part_range range;
  std::size_t reducer = 0;
  part_outcome outcome = part_outcome::reduced;
  std::vector<std::size_t> included_senders; // ascending; all senders for an empty part
  std::vector<std::size_t> excluded_senders; // ascending
  std::size_t rejected_chunks = 0;           // refused by validation (corrupt, out of range, ...)
};

struct peer_traffic {
  std::uint64_t bytes_sent = 0;
  std::uint64_t bytes_received = 0;
  std::uint64_t messages_sent = 0;
  std::uint64_t messages_received = 0;
};

struct allreduce_result {
  std::vector<part_range> partition;
  // One per peer: its vector after the round, or nothing for a peer that died.
  std::vector<std::optional<std::vector<float>>> outputs;
  std::vector<part_status> parts;   // one per part, i.e. per reducer
  std::vector<peer_traffic> traffic; // payload bytes over the network, per peer
};

// Runs one butterfly round among inputs.size() peers. weights[j] is peer j's sample count (finite,
// > 0). Throws allreduce_error when there are no peers, vectors differ in length, weights or
// bandwidth weights are missing or invalid, or the failure plan names a peer outside the group.
allreduce_result simulate_butterfly_allreduce(std::vector<std::vector<float>> inputs,
                                              std::vector<double> weights,
                                              const allreduce_options& options,
                                              const failure_plan& failures = {});

} // namespace ddactor
