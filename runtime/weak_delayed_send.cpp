// Timers that do not keep their actor alive; see weak_delayed_send.hpp.
#include "runtime/weak_delayed_send.hpp"

namespace ddactor {

void weak_delayed_send(caf::actor_system& system, const caf::actor_addr& receiver,
                       caf::timespan delay, caf::message content) {
  // Hidden: a pending timer must not hold up the system's wait for running actors at shutdown
  // (the clock drops it then, and the helper with it).
  system.spawn<caf::hidden>(
    [receiver, delay, content = std::move(content)](caf::event_based_actor* timer) -> caf::behavior {
      timer->delayed_send(timer, delay, caf::ok_atom_v);
      return {
        [=](caf::ok_atom) {
          if (auto target = caf::actor_cast<caf::strong_actor_ptr>(receiver))
            target->enqueue(caf::make_mailbox_element(caf::actor_cast<caf::strong_actor_ptr>(timer), caf::make_message_id(), {},
                                                      content),
                            timer->context());
          timer->quit();
        },
      };
    });
}

} // namespace ddactor
