// The group actor of one round ends with the averager it reports to: a peer that stops while its
// join is pending never sends the group an assignment, and a group left waiting for one held the
// actor system open at exit (and with it the compressors it was lent).
#include "actors/averaging_group.hpp"

#include <gtest/gtest.h>

#include <chrono>

#include "actors/compressor.hpp"
#include "runtime/actor_system_setup.hpp"
#include "runtime/actor_system_shutdown.hpp"

namespace ddactor {
namespace {

using namespace std::chrono_literals;

TEST(averaging_group, a_group_waiting_for_its_assignment_ends_when_its_averager_does) {
  ddactor_system_config cfg{{}, /*with_network=*/false};
  caf::actor_system system{cfg};
  detached_actor_guard guard{system, std::chrono::seconds(20)};
  caf::scoped_actor self{system};
  // An averager that takes what its groups tell it and does nothing with it.
  auto averager = system.spawn([]() -> round_owner::behavior_type {
    return {
      [](const average_outcome&) {},
      [](link_rate_atom, double, double, double, double) {},
      [](audit_atom, uint64_t, const std::string&, const std::string&, const std::string&) {},
    };
  });
  averaging_group_options options;
  options.values = std::make_shared<const std::vector<float>>(16, 1.0f);
  options.output_buffers = std::make_shared<recycled_floats>();
  options.compressors = {spawn_compressor(system)};
  options.reply_to = averager;
  options.timeout = 60s;  // no deadline runs before an assignment anyway
  auto group = spawn_averaging_group(system, options);
  self->monitor(group);
  self->send_exit(averager, caf::exit_reason::user_shutdown);
  bool ended = false;
  self->receive([&](const caf::down_msg& dm) { ended = dm.source == group.address(); },
                caf::after(5s) >> [] {});
  EXPECT_TRUE(ended) << "the group outlived its averager";
  self->send_exit(options.compressors.front(), caf::exit_reason::user_shutdown);
}

} // namespace
} // namespace ddactor
