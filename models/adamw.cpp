// Flat AdamW; see adamw.hpp.
#include "models/adamw.hpp"

#include <algorithm>
#include <cmath>

namespace ddactor {

flat_adamw::flat_adamw(int64_t size, adamw_options options, const torch::Device& device)
  : options_(options),
    exp_avg_(torch::zeros({size}, torch::TensorOptions(torch::kFloat32).device(device))),
    exp_avg_sq_(torch::zeros_like(exp_avg_)) {
  if (options_.sparse_catch_up)
    pending_rounds_ = torch::zeros_like(exp_avg_);
}

void flat_adamw::step(torch::Tensor& params, const torch::Tensor& grads, double lr) {
  step_with_square_weight(params, grads, lr, 1.0);
}

void flat_adamw::guess_step(torch::Tensor& params, const torch::Tensor& grads, double lr,
                            double own_share) {
  step_with_square_weight(params, grads, lr, std::clamp(own_share, 0.0, 1.0));
}

void flat_adamw::step_with_square_weight(torch::Tensor& params, const torch::Tensor& grads,
                                         double lr, double square_weight) {
  torch::NoGradGuard no_grad;
  ++step_count_;
  if (options_.weight_decay > 0)
    params.mul_(1.0 - lr * options_.weight_decay);
  if (options_.sparse_catch_up)
    catch_up_step(params, grads, lr);
  else
    dense_step(params, grads, lr, step_count_ > 1 ? square_weight : 1.0);
}

void flat_adamw::dense_step(torch::Tensor& params, const torch::Tensor& grads, double lr,
                            double square_weight) {
  const auto& o = options_;
  exp_avg_.lerp_(grads, 1.0 - o.beta1);
  if (square_weight < 1.0) {
    // v' = beta2 v + (1 - beta2) (w g^2 + (1 - w) v_hat), v_hat = v / (1 - beta2^(t - 1)): one
    // scale of v and the weighted square (no difference of large numbers).
    const double previous = 1.0 - std::pow(o.beta2, static_cast<double>(step_count_ - 1));
    const double keep = o.beta2 + (1.0 - o.beta2) * (1.0 - square_weight) / previous;
    exp_avg_sq_.mul_(keep).addcmul_(grads, grads, (1.0 - o.beta2) * square_weight);
  } else {
    exp_avg_sq_.mul_(o.beta2).addcmul_(grads, grads, 1.0 - o.beta2);
  }
  double bias1 = 1.0 - std::pow(o.beta1, static_cast<double>(step_count_));
  double bias2 = 1.0 - std::pow(o.beta2, static_cast<double>(step_count_));
  auto denom = (exp_avg_sq_.sqrt() / std::sqrt(bias2)).add_(o.eps);
  params.addcdiv_(exp_avg_, denom, -lr / bias1);
}

void flat_adamw::catch_up_step(torch::Tensor& params, const torch::Tensor& grads, double lr) {
  const auto& o = options_;
  pending_rounds_.add_(1.0f);
  auto sent = grads.ne(0);
  // c: the rounds this gradient stands for (1 where nothing was sent, to keep the math finite).
  auto rounds = torch::where(sent, pending_rounds_, torch::ones_like(pending_rounds_));
  auto per_round = grads / rounds;
  // EMA over c rounds of the same value g: m <- beta^c m + (1 - beta^c) g, with 1 - beta^c from
  // expm1 (1 - 0.999 in float32 would lose four digits).
  auto log_keep1 = rounds * std::log(o.beta1);
  auto log_keep2 = rounds * std::log(o.beta2);
  auto m = log_keep1.exp() * exp_avg_ - log_keep1.expm1() * per_round;
  auto v = log_keep2.exp() * exp_avg_sq_ - log_keep2.expm1() * per_round * per_round;
  // Written in place: checkpoints and shared state hold these buffers by reference.
  exp_avg_.copy_(torch::where(sent, m, exp_avg_));
  exp_avg_sq_.copy_(torch::where(sent, v, exp_avg_sq_));
  double bias1 = 1.0 - std::pow(o.beta1, static_cast<double>(step_count_));
  double bias2 = 1.0 - std::pow(o.beta2, static_cast<double>(step_count_));
  auto denom = (exp_avg_sq_.sqrt() / std::sqrt(bias2)).add_(o.eps);
  auto steps = (rounds * exp_avg_ / denom).masked_fill_(sent.logical_not(), 0.0f);
  params.sub_(steps, lr / bias1);
  pending_rounds_.masked_fill_(sent, 0.0f);
}

} // namespace ddactor
