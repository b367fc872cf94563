#pragma once
// ODE samplers for flow-matching models: integrate dx/dt = v(x, t) from pure noise at t = 1 to
// data at t = 0 on a uniform time grid, and classifier-free guidance around a DiT.
//
// Euler uses one velocity evaluation per step (error O(1/steps)); Heun (the trapezoid
// predictor-corrector of Karras et al. 2022) uses two and has error O(1/steps^2).

#include <torch/torch.h>

#include <functional>
#include <string>

#include "models/dit.hpp"

namespace ddactor {

/// v(x, t) with t of shape (N).
using velocity_field = std::function<torch::Tensor(const torch::Tensor& x, const torch::Tensor& t)>;

enum class sampler_kind { euler, heun };

/// "euler" or "heun"; throws std::invalid_argument otherwise.
sampler_kind parse_sampler(const std::string& name);

/// One integration from noise (t = 1) to data (t = 0), a step at a time: several can interleave
/// (a server answering small requests beside a large one) and one can stop between steps.
class flow_integration {
 public:
  /// Throws std::invalid_argument when steps < 1.
  flow_integration(torch::Tensor noise, int steps, sampler_kind kind);
  /// One step (Euler: one velocity evaluation, Heun: two). Precondition: !done().
  void step(const velocity_field& v);
  bool done() const { return done_ == steps_; }
  int steps_done() const { return done_; }
  int steps() const { return steps_; }
  /// The sample so far (the result once done()).
  const torch::Tensor& current() const { return x_; }

 private:
  torch::Tensor x_;
  int steps_;
  int done_ = 0;
  sampler_kind kind_;
};

/// Integrates from `noise` (t = 1) to t = 0 in `steps` steps.
torch::Tensor sample_flow(const velocity_field& v, torch::Tensor noise, int steps,
                          sampler_kind kind);

/// Classifier-free guidance: v_null + scale * (v_cond - v_null), with both branches in one batched
/// forward pass. scale == 1 skips the null branch.
velocity_field guided_velocity(dit model, dit_condition cond, double scale);

} // namespace ddactor
