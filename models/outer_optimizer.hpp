#pragma once
// DiLoCo's outer optimizer (Douillard et al., "DiLoCo: Distributed Low-Communication Training of
// Language Models", 2023): peers take many local AdamW steps from a shared anchor; each epoch the
// swarm averages the pseudo-gradient (anchor - local parameters), and every peer applies the same
// SGD step with Nesterov momentum to the anchor and continues from there. The paper's defaults:
// outer learning rate 0.7, momentum 0.9.
//
// Not thread-safe: owned by the training thread.

#include <torch/torch.h>

#include <span>
#include <vector>

namespace ddactor {

class outer_nesterov {
 public:
  outer_nesterov(const torch::Tensor& initial_parameters, double lr, double momentum);

  /// anchor - parameters: how far the local steps moved this epoch.
  std::vector<float> pseudo_gradient(const torch::Tensor& parameters) const;

  /// m = mu m + delta; anchor -= lr (delta + mu m); parameters = anchor.
  void step(std::span<const float> averaged_delta, torch::Tensor& parameters);

  /// The same step to the anchor for a round that ran while local steps went on (overlap, as in
  /// Streaming DiLoCo): `sent` holds the parameters whose pseudo-gradient went into the round;
  /// the local progress since, parameters - sent, is kept on top of the new anchor.
  void step_keeping_progress(std::span<const float> averaged_delta, torch::Tensor& parameters,
                             const torch::Tensor& sent);

  const torch::Tensor& anchor() const { return anchor_; }
  const torch::Tensor& momentum() const { return momentum_; }
  /// For restoring a checkpoint.
  void load(const torch::Tensor& anchor, const torch::Tensor& momentum);

 private:
  void advance_anchor(std::span<const float> averaged_delta);

  torch::Tensor anchor_;
  torch::Tensor momentum_;
  double lr_;
  double mu_;
};

} // namespace ddactor
