#pragma once
// Butterfly all-reduce: the executable specification of one averaging round, as a deterministic
// single-process simulation: every peer runs the round's state machine (butterfly_round.hpp), the
// very code the averaging-group actor drives with real messages, and this file carries their
// messages, coding jobs and crashes through one (optionally shuffled) queue.
//
// Algorithm (n peers, each with a float32 vector x_j of L elements and a weight w_j, its samples
// this epoch):
//   0. Every peer computes the same partition of [0, L) into parts P_0 .. P_{n-1}, sizes
//      proportional to their shares (bandwidth_shares.hpp). Peer i reduces part P_i.
//   1. Scatter-reduce: every peer j sends its slice x_j[P_i] to peer i, for every i != j, in chunks
//      of chunk_elements (its own slice x_i[P_i] stays local). Peer i validates each chunk and
//      hands it to a part_reducer, which computes avg(P_i) = sum_j w_j x_j[P_i] / sum_j w_j piece
//      by piece as the pieces complete.
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
//     less than n-2 elements with equal shares.
//
// Failure semantics: those of butterfly_round.hpp, because this simulation runs butterfly_round
// itself, one instance per peer, over a simulated network: a member that crashes or sends an
// invalid chunk is dropped and the survivors restart the round without it, so every survivor
// ends with the weighted average of the survivors' values (weights renormalized); a member the
// survivors dropped (the one whose chunk was refused) learns it from their chunks and ends as
// missed, keeping its own values. A crash is noticed by every other member (a monitor's "down" message), in the
// same queue as the messages in flight, so it can arrive before or after them.
//
// Determinism: the partition is computed in integers and the reducer sums in sender-index order, so
// the result depends only on the inputs and who survived, never on the order in which chunks
// arrive or come back from coding (the simulation shuffles both, with a seed, to prove it).
#include "runtime/allreduce/butterfly_partition.hpp"
#include "runtime/allreduce/chunk_policy.hpp"
#include "runtime/round_result.hpp"

#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <utility>
#include <vector>

namespace ddactor {

struct allreduce_options {
  std::size_t chunk_elements = 65536;     // elements per message: 256 KiB of float32
  std::vector<std::uint64_t> part_shares; // one per peer (bandwidth_shares.hpp); empty: equal
  chunk_policy policy;                    // the codec of each piece; default: raw float32
  double max_weight_ratio = 0;            // round_setup::max_weight_ratio (0: no bound)
  std::uint64_t round_id = 0;             // stamped on every chunk; chunks of another round are refused
  std::uint64_t delivery_seed = 0;        // 0: events in the order they happen; else a seeded shuffle
};

// Failures to inject into a simulated round. Indices are peer indices in the group.
struct failure_plan {
  // `sender` crashes once it has sent `chunks` of its scatter chunks to `reducer` (0: before it
  // sends any; crashes_at_start: before it does anything at all).
  struct crash_while_sending {
    std::size_t sender = 0;
    std::size_t reducer = 0;
    std::size_t chunks = 0;
  };
  // The chunk with index `chunk` (counted over the round) from `sender` to `reducer` arrives with
  // one bit flipped.
  struct corrupted_chunk {
    std::size_t sender = 0;
    std::size_t reducer = 0;
    std::size_t chunk = 0;
  };

  std::vector<std::size_t> crashes_at_start;
  std::vector<crash_while_sending> crashes_while_sending;
  std::vector<corrupted_chunk> corrupted;
  std::vector<std::size_t> dead_reducers; // crash when their first result is coded
  // Links cut from the start: nothing passes between the two, and each sees the other as gone
  // (a partial partition: both still reach everyone else).
  std::vector<std::pair<std::size_t, std::size_t>> cut_links;

  failure_plan& peer_crashes_at_start(std::size_t peer) {
    crashes_at_start.push_back(peer);
    return *this;
  }
  failure_plan& sender_crashes_after_chunks(std::size_t sender, std::size_t reducer,
                                            std::size_t chunks) {
    crashes_while_sending.push_back({sender, reducer, chunks});
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
  failure_plan& link_cut(std::size_t a, std::size_t b) {
    cut_links.emplace_back(a, b);
    return *this;
  }
};

struct peer_traffic {
  std::uint64_t bytes_sent = 0;
  std::uint64_t bytes_received = 0;
  std::uint64_t messages_sent = 0;
  std::uint64_t messages_received = 0;
};

// How the round ended for one peer.
struct simulated_member {
  // Its vector after the round (its own values when its round failed); nothing when it crashed.
  std::optional<std::vector<float>> output;
  bool crashed = false;
  round_result result = round_result::failed; // averaged, alone, failed (deadline), or missed
                                              // (the others went on without it)
  std::uint64_t member_set = 0;               // the members of its last attempt
  std::int32_t restarts = 0;
  std::size_t rejected_chunks = 0;
  std::size_t digest_mismatches = 0;          // other members' digests that differed from its own
  std::vector<float> residual;                // top-k's error feedback after the round
  peer_traffic traffic;                       // chunk payload bytes over the network
};

struct allreduce_result {
  std::vector<part_range> partition;      // of the first attempt
  std::vector<simulated_member> members;  // one per peer
};

// Runs one butterfly round among inputs.size() peers (at most 64). weights[j] is peer j's sample
// count (finite, > 0). Throws allreduce_error when there are no peers or too many, vectors differ
// in length, weights or part shares are missing or invalid, or the failure plan names a peer
// outside the group.
allreduce_result simulate_butterfly_allreduce(std::vector<std::vector<float>> inputs,
                                              std::vector<double> weights,
                                              const allreduce_options& options,
                                              const failure_plan& failures = {});

} // namespace ddactor
