// Largest-remainder partition of the flat vector, in exact integer arithmetic so that every peer,
// whatever its CPU or compiler flags, computes the same boundaries from the same weights.
#include "runtime/allreduce/butterfly_partition.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <string>

namespace ddactor {

namespace {

using wide_uint = unsigned __int128;

// Weights become integers q_i = w_i * 2^(62 - e), with 2^e just above the largest weight. A
// power-of-two scaling is exact, so the ratios between the q_i are the ratios between the weights
// (up to truncation of weights more than 2^9 times smaller than the largest, which keep fewer bits).
constexpr int weight_bits = 62;

std::vector<std::uint64_t> integer_weights(std::span<const double> weights) {
  double largest = 0.0;
  for (std::size_t i = 0; i < weights.size(); ++i) {
    if (!std::isfinite(weights[i]) || weights[i] < 0.0)
      throw allreduce_error("butterfly_partition: bandwidth weight of peer " + std::to_string(i) +
                            " is " + std::to_string(weights[i]) +
                            "; weights must be finite and >= 0");
    largest = std::max(largest, weights[i]);
  }
  if (largest == 0.0)
    throw allreduce_error("butterfly_partition: all " + std::to_string(weights.size()) +
                          " bandwidth weights are 0, so no peer would reduce anything");
  int exponent = 0;
  std::frexp(largest, &exponent); // largest is in [2^(exponent-1), 2^exponent)
  std::vector<std::uint64_t> result(weights.size());
  for (std::size_t i = 0; i < weights.size(); ++i)
    result[i] = static_cast<std::uint64_t>(std::ldexp(weights[i], weight_bits - exponent));
  return result;
}

} // namespace

std::vector<part_range> butterfly_partition(std::size_t length,
                                            std::span<const double> bandwidth_weights,
                                            std::size_t alignment) {
  if (bandwidth_weights.empty())
    throw allreduce_error("butterfly_partition: a group needs at least one peer");
  if (alignment == 0)
    throw allreduce_error("butterfly_partition: alignment must be at least 1 element");
  const std::size_t n = bandwidth_weights.size();
  const std::vector<std::uint64_t> q = integer_weights(bandwidth_weights);
  const wide_uint total = std::accumulate(q.begin(), q.end(), wide_uint{0});

  // Units of `alignment` elements; the last one may be short.
  const std::size_t units = length / alignment + (length % alignment != 0 ? 1 : 0);

  // Exact quota_i = units * q_i / total: its floor, and the remainder that ranks the leftovers.
  std::vector<std::size_t> part_units(n);
  std::vector<wide_uint> remainder(n);
  std::size_t assigned = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const wide_uint product = static_cast<wide_uint>(units) * q[i];
    part_units[i] = static_cast<std::size_t>(product / total);
    remainder[i] = product % total;
    assigned += part_units[i];
  }
  // Fewer than n units are left over, and they always go to nonzero remainders (the remainders sum
  // to leftover * total with each below total), so a zero-weight peer never gets one.
  const std::size_t leftover = units - assigned;
  std::vector<std::size_t> order(n);
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
    return remainder[a] > remainder[b];
  });
  for (std::size_t k = 0; k < leftover; ++k)
    ++part_units[order[k]];

  std::vector<part_range> parts(n);
  wide_uint unit_cursor = 0;
  auto boundary = [&](wide_uint unit) {
    return static_cast<std::size_t>(std::min<wide_uint>(unit * alignment, length));
  };
  for (std::size_t i = 0; i < n; ++i) {
    parts[i].begin = boundary(unit_cursor);
    unit_cursor += part_units[i];
    parts[i].end = boundary(unit_cursor);
  }
  return parts;
}

std::vector<part_range> butterfly_partition(std::size_t length, std::size_t group_size,
                                            std::size_t alignment) {
  const std::vector<double> equal(group_size, 1.0);
  return butterfly_partition(length, equal, alignment);
}

std::vector<part_range> chunk_ranges(part_range part, std::size_t chunk_elements) {
  if (chunk_elements == 0)
    throw allreduce_error("chunk_ranges: chunk_elements must be at least 1");
  if (part.end < part.begin)
    throw allreduce_error("chunk_ranges: part [" + std::to_string(part.begin) + ", " +
                          std::to_string(part.end) + ") ends before it begins");
  std::vector<part_range> chunks;
  chunks.reserve(part.size() / chunk_elements + 1);
  for (std::size_t begin = part.begin; begin < part.end;) {
    const std::size_t end = begin + std::min(chunk_elements, part.end - begin);
    chunks.push_back({begin, end});
    begin = end;
  }
  return chunks;
}

} // namespace ddactor
