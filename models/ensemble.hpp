#pragma once
// Inference of a Decentralized Diffusion Model: the router's p(cluster | x_t, t) weights the
// experts' velocities, u(x_t) = sum_k w_k(x_t, t) v_k(x_t), re-evaluated at every sampling step.
//
//   top1   w = one-hot of the most probable expert (the paper's best, and the cheapest)
//   topk   the k most probable experts, probabilities renormalised over them
//   full   all experts, weighted by the router's probabilities
//   fixed  weights given per sample (the "oracle cluster" ablation)
//
// Each expert only runs on the samples that need it. An expert that cannot answer (a remote
// peer that died) raises expert_unavailable; with fall-back on, its column is dropped and the
// affected samples are routed to the next-best expert, otherwise the error reaches the caller.

#include <torch/torch.h>

#include <functional>
#include <memory>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "models/dit.hpp"
#include "models/router.hpp"
#include "models/samplers.hpp"

namespace ddactor {

enum class routing_strategy { top1, topk, full, fixed };

/// "top1", "topk", "full" (fixed weights are given, not named).
routing_strategy parse_routing(const std::string& name);

/// Per-sample expert weights (N, K) from router probabilities; rows sum to 1.
torch::Tensor routing_weights(const torch::Tensor& probabilities, routing_strategy strategy,
                              int64_t top_k = 2);

/// sum_k weights[:, k] * velocities[k]; a velocity may be undefined where its weights are 0.
torch::Tensor combine_velocities(const torch::Tensor& weights,
                                 const std::vector<torch::Tensor>& velocities);

class expert_unavailable : public std::runtime_error {
 public:
  expert_unavailable(int64_t expert, const std::string& why)
    : std::runtime_error("expert " + std::to_string(expert) + " is unavailable: " + why),
      expert(expert) {}
  int64_t expert;
};

/// One expert's (guided) velocity for some samples: x (n, C, H, W), t (n), their conditions.
using expert_function = std::function<torch::Tensor(
  const torch::Tensor& x, const torch::Tensor& t, const dit_condition& cond)>;

/// A local expert: the DiT with classifier-free guidance at `cfg_scale`.
expert_function local_expert(dit model, double cfg_scale);

struct ensemble_options {
  routing_strategy strategy = routing_strategy::top1;
  int64_t top_k = 2;
  /// Route around an unavailable expert instead of failing.
  bool fall_back = true;
  /// For routing_strategy::fixed: (N, K) weights, one row per sample.
  torch::Tensor fixed_weights;
};

/// The ensemble's velocity field for the N conditions of `cond`. `unavailable` collects experts
/// that failed (shared across the steps of one generation).
velocity_field ensemble_velocity(router routing_model, std::vector<expert_function> experts,
                                 dit_condition cond, ensemble_options options,
                                 std::shared_ptr<std::set<int64_t>> unavailable = nullptr);

} // namespace ddactor
