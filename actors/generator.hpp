#pragma once
// The router actor of a DDM ("generator" here, to keep it apart from the router model): it holds
// the router model and a handle on every expert -- a DiT in this process or an expert_server on
// another peer -- and answers generation requests with a PNG grid, sampling the flow ODE with
// the experts' velocities combined by the router at every step (models/ensemble.hpp). Detached:
// sampling takes seconds and never blocks CAF's scheduler.
//
//   client --(generate, generate_request)--> generator --> std::vector<char> (PNG) | error
//   generator --(velocity, velocity_request)--> remote experts, each step, finite timeout
//
// A remote expert that dies or times out is marked unavailable for that request: with
// fall-back its samples go to the next-best expert, without it the request fails with a clear
// error (peer_unreachable). The generator keeps serving either way.

#include <chrono>
#include <string>
#include <vector>

#include "caf/all.hpp"

#include "models/dit.hpp"
#include "models/router.hpp"
#include "runtime/message_types.hpp"

namespace ddactor {

struct expert_endpoint {
  /// A DiT in this process...
  dit local{nullptr};
  /// ...or an expert_server on another peer, and its address (for messages).
  caf::actor remote;
  std::string address;
};

struct generator_options {
  router routing{nullptr};
  std::vector<expert_endpoint> experts;
  /// Image shape and conditioning the experts share.
  dit_options shape;
  bool fall_back = true;
  std::chrono::milliseconds expert_timeout{10000};
  int32_t max_count = 64;
};

/// `(generate_atom, generate_request)` -> std::vector<char> (PNG); `(status_atom)` ->
/// std::string (JSON: experts and their last known availability).
caf::actor spawn_generator(caf::actor_system& system, generator_options options);

/// Checks a request against the served model; returns the reason it is refused, if any.
std::optional<std::string> validate_generate_request(const generate_request& request,
                                                     const dit_options& shape, int32_t max_count);

} // namespace ddactor
