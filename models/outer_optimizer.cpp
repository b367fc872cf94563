// DiLoCo's outer Nesterov step; see outer_optimizer.hpp.
#include "models/outer_optimizer.hpp"

#include <stdexcept>

#include "models/device_transfer.hpp"

namespace ddactor {

outer_nesterov::outer_nesterov(const torch::Tensor& initial_parameters, double lr,
                               double momentum)
  : anchor_(initial_parameters.detach().clone()),
    momentum_(torch::zeros_like(anchor_)),
    lr_(lr),
    mu_(momentum) {}

std::vector<float> outer_nesterov::pseudo_gradient(const torch::Tensor& parameters) const {
  return host_floats(anchor_ - parameters.detach());
}

void outer_nesterov::advance_anchor(std::span<const float> averaged_delta) {
  if (static_cast<int64_t>(averaged_delta.size()) != anchor_.numel())
    throw std::invalid_argument("pseudo-gradient has the wrong size");
  torch::NoGradGuard no_grad;
  const auto delta = device_floats(averaged_delta, anchor_.device());
  momentum_.mul_(mu_).add_(delta);
  anchor_.sub_(delta + mu_ * momentum_, lr_);
}

void outer_nesterov::step(std::span<const float> averaged_delta, torch::Tensor& parameters) {
  advance_anchor(averaged_delta);
  torch::NoGradGuard no_grad;
  parameters.copy_(anchor_);
}

void outer_nesterov::step_keeping_progress(std::span<const float> averaged_delta,
                                           torch::Tensor& parameters, const torch::Tensor& sent) {
  if (sent.sizes() != anchor_.sizes())
    throw std::invalid_argument("the parameters sent have the wrong size");
  advance_anchor(averaged_delta);
  torch::NoGradGuard no_grad;
  parameters.sub_(sent).add_(anchor_);
}

void outer_nesterov::load(const torch::Tensor& anchor, const torch::Tensor& momentum) {
  if (anchor.sizes() != anchor_.sizes() || momentum.sizes() != momentum_.sizes())
    throw std::invalid_argument("outer optimizer state has the wrong size");
  anchor_.copy_(anchor);
  momentum_.copy_(momentum);
}

} // namespace ddactor
