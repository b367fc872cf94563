#pragma once
// Timers that do not keep their actor alive. CAF 0.17's delayed_send parks a strong reference to
// the receiver in the system clock until the message is due; a detached actor that quits with
// such a timer pending keeps its thread (waiting for the actor's destruction) for as long, and an
// actor system destroyed meanwhile can wait on that thread forever. An averaging group with a
// 60-second deadline kept its thread a minute after every round.
//
// weak_delayed_send parks a small hidden actor in the clock instead, holding only a weak address
// of the receiver: when the time comes, the message goes to the receiver if it still exists and
// is dropped otherwise. Its sender is that local helper, so handlers that accept timer messages
// from their own node only keep working.

#include <chrono>

#include "caf/all.hpp"

namespace ddactor {

/// Sends `content` to `receiver` after `delay`, unless the receiver is gone by then.
void weak_delayed_send(caf::actor_system& system, const caf::actor_addr& receiver,
                       caf::timespan delay, caf::message content);

/// The usual form: a message to oneself.
template <class... Ts>
void weak_delayed_send(caf::local_actor* self, caf::timespan delay, Ts&&... xs) {
  weak_delayed_send(self->system(), self->address(), delay,
                    caf::make_message(std::forward<Ts>(xs)...));
}

} // namespace ddactor
