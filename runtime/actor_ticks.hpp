#pragma once
// Deadlines of detached actors, checked on short ticks. CAF 0.17's delayed_send parks a strong
// reference to its receiver in the system's clock until the message is due, so a detached actor
// that quits with a long timer pending keeps its thread (which waits for the actor's destruction)
// until then: an averaging group with a 60-second deadline held one for a minute after every
// round, and an actor system destroyed meanwhile waits on such a thread forever. Cancelling is
// not offered for delayed messages.
//
// Actors with long deadlines therefore send themselves a tick at most max_tick apart and compare
// the clock with their deadlines on each one: after they quit, the pending tick holds them for
// at most that long.

#include <algorithm>
#include <chrono>

namespace ddactor {

/// The longest a pending tick may hold an actor that has quit.
constexpr std::chrono::milliseconds max_tick{200};

/// Delay until the next check of `deadline`: at most max_tick, at least a millisecond.
inline std::chrono::milliseconds tick_towards(std::chrono::steady_clock::time_point deadline,
                                              std::chrono::steady_clock::time_point now) {
  const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - now);
  return std::clamp(left, std::chrono::milliseconds(1), max_tick);
}

} // namespace ddactor
