// Sampling and scoring for step_ahead_probe.hpp. Samples are float64 on the host, so the dot
// products do not depend on the device or the weights' precision.
#include "models/step_ahead_probe.hpp"

#include <cmath>

namespace ddactor {

torch::Tensor step_ahead_probe::sampled(const torch::Tensor& weights) {
  const int64_t n = weights.numel();
  if (!indices_.defined() || indices_.device() != weights.device()) {
    const int64_t stride = std::max<int64_t>(1, (n + sample_size - 1) / sample_size);
    indices_ = torch::arange(0, n, stride, torch::TensorOptions(torch::kLong).device(
                                               weights.device()));
  }
  torch::NoGradGuard no_grad;
  return weights.detach().reshape({-1}).index_select(0, indices_).to(torch::kCPU,
                                                                      torch::kFloat64);
}

void step_ahead_probe::take_start(const torch::Tensor& weights) {
  start_ = sampled(weights);
  guess_step_ = torch::Tensor();
}

void step_ahead_probe::take_guess(const torch::Tensor& weights) {
  if (start_.defined())
    guess_step_ = sampled(weights) - start_;
}

std::optional<guess_score> step_ahead_probe::score(const torch::Tensor& weights) {
  if (!start_.defined() || !guess_step_.defined()) {
    drop();
    return std::nullopt;
  }
  const torch::Tensor swarm_step = sampled(weights) - start_;
  const double swarm_squared = swarm_step.dot(swarm_step).item<double>();
  std::optional<guess_score> out;
  if (swarm_squared > 0 && std::isfinite(swarm_squared)) {
    const torch::Tensor miss = guess_step_ - swarm_step;
    out = guess_score{guess_step_.dot(swarm_step).item<double>() / swarm_squared,
                      std::sqrt(miss.dot(miss).item<double>() / swarm_squared)};
    ++totals_.scored;
    totals_.along += out->along;
    totals_.off += out->off;
  }
  drop();
  return out;
}

step_ahead_probe::summary step_ahead_probe::means() const {
  if (totals_.scored == 0)
    return {};
  const auto n = static_cast<double>(totals_.scored);
  return summary{totals_.scored, totals_.along / n, totals_.off / n};
}

void step_ahead_probe::drop() {
  start_ = torch::Tensor();
  guess_step_ = torch::Tensor();
}

} // namespace ddactor
