#pragma once
// How a matchmaking leader cuts a group's vector by its members' link rates, so that the slowest
// member's transfer time is as small as it can be (the problem hivemind's load balancing solves
// with a linear program; here in closed form).
//
// In a butterfly all-reduce of L values among n members, member i with part p_i sends L - p_i
// values in the scatter and (n - 1) p_i in the gather, and receives as many: L + (n - 2) p_i
// each way. At rate b_i (the smaller of its upload and download) that takes
// (L + (n - 2) p_i) / b_i. Minimising the largest of these over p_i >= 0, sum p_i = L, is
// water-filling: the members fast enough share a common time T, with p_i = (T b_i - L) / (n - 2),
// and the others get no part (they only send and receive, every member moves at least L values).
// With n <= 2 every member moves L values whatever the cut, so the parts stay equal.
//
// The leader computes integer shares and sends them in the assignment; members cut with
// butterfly_partition's exact integer arithmetic and never redo this floating-point arithmetic,
// which could round differently on another machine. A restart without some members cuts the
// vector among the survivors in proportion to their shares.
//
// Pure code: no actors, no clock.

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "runtime/allreduce/butterfly_partition.hpp"

namespace ddactor {

/// The shares of members with link rates `rates` (bytes per second; 0 or not finite: unknown,
/// counted as the median of the known rates). No known rate, or fewer than 3 members: equal
/// shares. The largest share is 2^40; a member too slow to reduce gets 0.
std::vector<std::uint64_t> bandwidth_part_shares(std::span<const double> rates);

/// The same, where only members with may_reduce[i] get a part (the others cannot accept
/// connections: they send and receive over links they opened, as hivemind's client mode). With
/// nobody who may reduce, every member may (their links are all relayed).
std::vector<std::uint64_t> bandwidth_part_shares(std::span<const double> rates,
                                                 const std::vector<bool>& may_reduce);

/// The parts of the members of an attempt from their shares (in member order): proportional to
/// the shares, equal when every share is 0 (the members that had parts are gone).
std::vector<part_range> partition_by_shares(std::size_t length,
                                            std::span<const std::uint64_t> shares);

/// Seconds the slowest member needs to move its values with `parts` (elements of
/// `bytes_per_element` bytes) at `rates` bytes per second: the bandwidth bound of a round.
double slowest_transfer_seconds(std::span<const part_range> parts, std::span<const double> rates,
                                double bytes_per_element);

} // namespace ddactor
