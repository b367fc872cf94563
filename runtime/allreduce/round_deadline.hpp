#pragma once
// How long a round may take: derived from what it must move and how fast its members' links
// measured, not fixed. A 100 MB round among peers that upload at 10 Mbit/s takes minutes, and a
// fixed deadline made of a LAN's round time failed every one of them; a fixed deadline long
// enough for them would keep fast swarms waiting that long on a member that died silently.
//
// The leader computes the deadline with the group (it knows every member's measured rate) and
// sends it in the assignment, so that all members give up at the same time. Members accept it
// within [their allreduce_timeout, max_round_deadline_stretch x that]: a hostile leader can
// neither cut a round short nor hold members in one for ever.
//
// Pure code: no actors, no clock.

#include <chrono>
#include <cstdint>
#include <span>

namespace ddactor {

/// A round's deadline is at most this many times the configured allreduce_timeout.
inline constexpr int max_round_deadline_stretch = 16;

/// The deadline of a butterfly round of `length` values cut by `shares` among members with link
/// rates `rates` (bytes per second; 0 or not finite: unknown, counted as the slowest known
/// rate): the bandwidth bound of the round at 4 bytes per value (fp32; a codec only makes it
/// faster), times 3 for rates that vary and restarts after departures, plus 2 s of round trips.
/// Never below `floor` (the configured allreduce_timeout) nor above
/// max_round_deadline_stretch x floor; `floor` when no rate is known.
std::chrono::milliseconds round_deadline(uint64_t length, std::span<const uint64_t> shares,
                                         std::span<const double> rates,
                                         std::chrono::milliseconds floor);

/// The deadline a member uses for an assignment that asks for `assigned` (0: none given):
/// clamped to [floor, max_round_deadline_stretch x floor].
std::chrono::milliseconds accepted_round_deadline(std::chrono::milliseconds assigned,
                                                  std::chrono::milliseconds floor);

} // namespace ddactor
