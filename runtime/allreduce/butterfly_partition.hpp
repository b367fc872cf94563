#pragma once
// How a butterfly all-reduce cuts the flat vector among the peers of a group.
//
// Peer i of a group of n reduces the contiguous part i of the vector. Part sizes are proportional to
// each peer's bandwidth weight, so a slow link reduces less and a client-only peer (weight 0) reduces
// nothing. Every peer computes the partition on its own from the same inputs and must get the same
// answer, on any machine: the arithmetic is therefore done in integers after an exact power-of-two
// scaling of the weights, never in floating point that a compiler or CPU could round differently.
//
// This file also owns `allreduce_error`, the exception of the all-reduce module.
#include <cstddef>
#include <span>
#include <stdexcept>
#include <vector>

namespace ddactor {

// Thrown for arguments that make an all-reduce step impossible (a caller's bug, not a peer's fault).
class allreduce_error : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

// A half-open range [begin, end) of element indices in the flat vector.
struct part_range {
  std::size_t begin = 0;
  std::size_t end = 0;

  std::size_t size() const noexcept { return end - begin; }
  bool empty() const noexcept { return end == begin; }
  friend bool operator==(const part_range&, const part_range&) = default;
};

// Cuts [0, length) into bandwidth_weights.size() contiguous parts, part i for peer i, in peer order.
// Sizes are proportional to the weights by the largest-remainder method: each part gets the floor of
// its exact quota, and the units left over go to the largest fractional remainders (ties: lowest peer
// index). A peer whose weight is 0 gets an empty part. With `alignment` > 1 the vector is counted in
// units of that many elements and every boundary but the final `length` is a multiple of it (useful
// when a codec works on fixed blocks); the last unit may be short.
//
// Weights are compared with 62 bits of relative precision: a weight below 2^-62 of the largest one
// counts as 0. Throws allreduce_error when there are no weights, a weight is negative or not finite,
// all weights are 0, or alignment is 0.
std::vector<part_range> butterfly_partition(std::size_t length,
                                            std::span<const double> bandwidth_weights,
                                            std::size_t alignment = 1);

// Equal weights for a group of n: the default partition.
std::vector<part_range> butterfly_partition(std::size_t length, std::size_t group_size,
                                            std::size_t alignment = 1);

// Cuts a part into consecutive chunks of chunk_elements (the last one may be shorter), in vector
// coordinates (a chunk's offset inside its part is chunk.begin - part.begin). An empty part has no
// chunks. Throws allreduce_error when chunk_elements is 0.
std::vector<part_range> chunk_ranges(part_range part, std::size_t chunk_elements);

} // namespace ddactor
