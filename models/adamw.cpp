// Flat AdamW; see adamw.hpp.
#include "models/adamw.hpp"

#include <cmath>

namespace ddactor {

flat_adamw::flat_adamw(int64_t size, adamw_options options)
  : options_(options),
    exp_avg_(torch::zeros({size}, torch::kFloat32)),
    exp_avg_sq_(torch::zeros({size}, torch::kFloat32)) {}

void flat_adamw::step(torch::Tensor& params, const torch::Tensor& grads, double lr) {
  torch::NoGradGuard no_grad;
  ++step_count_;
  const auto& o = options_;
  if (o.weight_decay > 0)
    params.mul_(1.0 - lr * o.weight_decay);
  exp_avg_.lerp_(grads, 1.0 - o.beta1);
  exp_avg_sq_.mul_(o.beta2).addcmul_(grads, grads, 1.0 - o.beta2);
  double bias1 = 1.0 - std::pow(o.beta1, static_cast<double>(step_count_));
  double bias2 = 1.0 - std::pow(o.beta2, static_cast<double>(step_count_));
  auto denom = (exp_avg_sq_.sqrt() / std::sqrt(bias2)).add_(o.eps);
  params.addcdiv_(exp_avg_, denom, -lr / bias1);
}

} // namespace ddactor
