#pragma once
// The expert actor of a DDM: one trained expert DiT, serving velocities to routers on other
// peers. Detached: a forward pass never blocks CAF's scheduler.
//
//   router --(velocity, velocity_request)--> expert --> tensor_blob (the guided velocity)
//
// Requests are validated before they touch the model (shapes against the expert's image size,
// batch size bounded, conditions that fit, finite values); a bad one is answered with an error
// and counted, and the expert goes on serving.

#include "caf/all.hpp"

#include "models/dit.hpp"
#include "runtime/message_types.hpp"

namespace ddactor {

struct expert_server_options {
  dit model{nullptr};
  int64_t expert_index = 0;
  /// Largest batch one request may carry.
  int64_t max_batch = 1024;
};

/// Remote only: its interface is expert_remote (runtime/swarm_messages.hpp).
expert_remote spawn_expert_server(caf::actor_system& system, expert_server_options options);

} // namespace ddactor
