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

/// Integrates from `noise` (t = 1) to t = 0 in `steps` steps.
torch::Tensor sample_flow(const velocity_field& v, torch::Tensor noise, int steps,
                          sampler_kind kind);

/// Classifier-free guidance: v_null + scale * (v_cond - v_null), with both branches in one batched
/// forward pass. scale == 1 skips the null branch.
velocity_field guided_velocity(dit model, dit_condition cond, double scale);

} // namespace ddactor
