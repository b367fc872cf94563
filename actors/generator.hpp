#pragma once
// The router actor of a DDM ("generator" here, to keep it apart from the router model): it holds
// the router model and a handle on every expert -- a DiT in this process or an expert_server on
// another peer -- and answers generation requests with a PNG grid, sampling the flow ODE with
// the experts' velocities combined by the router at every step (models/ensemble.hpp). Detached:
// sampling takes seconds and never blocks CAF's scheduler.
//
// Requests interleave step by step (a one-image request is not stuck behind a large one); at
// most max_queue are in progress, beyond that a request is refused with errc::overloaded; a
// request whose requester ends (an HTTP client that hung up, a dead peer) is dropped between two
// steps. What it reports about itself (generator_status) can be read from any thread without
// asking it, so health probes never wait behind a generation.
//
//   client --(generate, generate_request)--> generator --> std::vector<char> (PNG) | error
//   generator --(velocity, velocity_request)--> remote experts, each step, finite timeout
//
// A remote expert that dies or times out is marked unavailable for that request: with
// fall-back its samples go to the next-best expert, without it the request fails with a clear
// error (peer_unreachable). The generator keeps serving either way.

#include <chrono>
#include <memory>
#include <mutex>
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
  expert_remote remote;
  std::string address;
};

/// The generator's last published state as JSON (experts and their availability, requests
/// served and in progress). Thread-safe.
class generator_status {
 public:
  void set(std::string json) {
    std::lock_guard<std::mutex> lock(mutex_);
    json_ = std::move(json);
  }
  std::string json() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return json_;
  }

 private:
  mutable std::mutex mutex_;
  std::string json_ = "{}";
};

struct generator_options {
  router routing{nullptr};
  std::vector<expert_endpoint> experts;
  /// Image shape and conditioning the experts share.
  dit_options shape;
  /// Names of the classes (grid row labels); "class N" past its end.
  std::vector<std::string> class_names;
  bool fall_back = true;
  std::chrono::milliseconds expert_timeout{10000};
  /// Images one request may ask for, in all.
  int32_t max_count = 64;
  /// Requests in progress at most; more are refused (HTTP 429).
  size_t max_queue = 8;
  /// Where the router, the local experts and the sampling run (run.device; the models are
  /// moved there by whoever loads them). Remote experts get host copies.
  torch::Device device = torch::kCPU;
  /// Where the generator publishes its state (never null).
  std::shared_ptr<generator_status> status = std::make_shared<generator_status>();
};

/// `(generate_atom, generate_request)` -> std::vector<char> (PNG); `(status_atom)` ->
/// std::string (JSON: experts and their last known availability).
/// The full interface: the remote one and its own work steps.
using generator_actor = router_remote::extend<caf::reacts_to<work_atom>>;

generator_actor spawn_generator(caf::actor_system& system, generator_options options);

/// Images a request asks for: count, times every class when a class-conditioned model is asked
/// for no class in particular.
int64_t requested_images(const generate_request& request, const dit_options& shape);

/// Checks a request against the served model; returns the reason it is refused, if any.
std::optional<std::string> validate_generate_request(const generate_request& request,
                                                     const dit_options& shape, int32_t max_count);

} // namespace ddactor
