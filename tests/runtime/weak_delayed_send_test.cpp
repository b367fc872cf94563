// Timers that do not keep their actor alive, and the bounded wait for detached actors at
// shutdown: a detached actor that quits with a long timer pending is gone at once (with
// delayed_send it would pin its thread until the timer is due), a timer still reaches a live
// actor, and a detached actor that never stops is reported instead of hanging.
#include "runtime/weak_delayed_send.hpp"

#include <gtest/gtest.h>

#include <chrono>

#include "runtime/actor_system_setup.hpp"
#include "runtime/actor_system_shutdown.hpp"
#include "runtime/message_types.hpp"

namespace ddactor {
namespace {

using namespace std::chrono_literals;

TEST(weak_delayed_send, a_timer_reaches_a_live_actor_from_its_own_node) {
  ddactor_system_config config{{}, /*with_network=*/false};
  caf::actor_system system{config};
  detached_actor_guard guard{system, 20s};
  caf::scoped_actor self{system};
  auto start = std::chrono::steady_clock::now();
  weak_delayed_send(system, self->address(), 50ms, caf::make_message(tick_atom_v, 7));
  bool got = false;
  self->receive(
    [&](tick_atom, int value) {
      got = true;
      EXPECT_EQ(value, 7);
      ASSERT_NE(self->current_sender(), nullptr);
      EXPECT_EQ(self->current_sender()->node(), self->node());
    },
    caf::after(10s) >> [] { ADD_FAILURE() << "the timer never fired"; });
  EXPECT_TRUE(got);
  EXPECT_GE(std::chrono::steady_clock::now() - start, 50ms);
}

TEST(weak_delayed_send, a_detached_actor_with_a_pending_timer_ends_at_once) {
  ddactor_system_config config{{}, /*with_network=*/false};
  caf::actor_system system{config};
  const size_t own = system.detached_actors();
  {
    auto actor = system.spawn<caf::detached>([](caf::event_based_actor* self) -> caf::behavior {
      weak_delayed_send(self, std::chrono::hours(1), timeout_atom_v);
      return {[=](timeout_atom) {}};
    });
    caf::anon_send_exit(actor, caf::exit_reason::user_shutdown);
  }
  EXPECT_EQ(await_detached_actors(system, own, 10s), 0u);
}

TEST(weak_delayed_send, a_detached_actor_that_never_stops_is_reported_not_awaited_forever) {
  ddactor_system_config config{{}, /*with_network=*/false};
  caf::actor_system system{config};
  const size_t own = system.detached_actors();
  auto actor = system.spawn<caf::detached>(
    [](caf::event_based_actor*) -> caf::behavior { return {[](tick_atom) {}}; });
  EXPECT_EQ(await_detached_actors(system, own, 100ms), 1u);
  caf::anon_send_exit(actor, caf::exit_reason::user_shutdown);
  actor = nullptr;
  EXPECT_EQ(await_detached_actors(system, own, 10s), 0u);
}

} // namespace
} // namespace ddactor
