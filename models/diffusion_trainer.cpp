// One DiT replica's training arithmetic; see diffusion_trainer.hpp.
#include "models/diffusion_trainer.hpp"

#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "models/flow_matching.hpp"

namespace ddactor {

diffusion_trainer::diffusion_trainer(dit_options model_options, trainer_settings settings)
  : model_options_(std::move(model_options)),
    settings_(settings),
    model_(nullptr),
    ema_model_(nullptr),
    generator_(at::make_generator<at::CPUGeneratorImpl>(settings.noise_seed)) {
  torch::manual_seed(settings.seed);
  model_ = dit(model_options_);
  ema_model_ = dit(model_options_);
  parameters_ = std::make_unique<flat_parameters>(*model_);
  ema_parameters_ = std::make_unique<flat_parameters>(*ema_model_);
  ema_parameters_->values().copy_(parameters_->values());
  for (auto& p : ema_model_->parameters())
    p.set_requires_grad(false);
  ema_model_->eval();
  optimizer_ = std::make_unique<flat_adamw>(parameters_->size(), settings_.adamw);
}

dit_condition diffusion_trainer::condition_of(const training_batch& batch) const {
  dit_condition cond;
  if (model_options_.conditioning == "class") {
    if (static_cast<int64_t>(batch.labels.size()) != batch.count)
      throw std::invalid_argument("class-conditioned training needs one label per image");
    cond.labels = torch::tensor(batch.labels, torch::kInt64);
  } else if (model_options_.conditioning == "caption") {
    if (static_cast<int64_t>(batch.captions.size()) != batch.count)
      throw std::invalid_argument("caption-conditioned training needs one caption per image");
    cond.tokens = tokenize_captions(batch.captions, model_options_.caption.max_bytes);
  }
  return cond;
}

double diffusion_trainer::accumulate(const training_batch& batch) {
  if (batch.count <= 0)
    return 0;
  auto expected = batch.count * batch.channels * batch.height * batch.width;
  if (static_cast<int64_t>(batch.images.size()) != expected ||
      batch.channels != model_options_.in_channels || batch.height != model_options_.image_size ||
      batch.width != model_options_.image_size)
    throw std::invalid_argument("batch shape does not match the model");
  model_->train();
  // from_blob does not copy; the batch outlives this call.
  auto x0 = torch::from_blob(const_cast<float*>(batch.images.data()),
                             {batch.count, batch.channels, batch.height, batch.width},
                             torch::kFloat32);
  auto cond = condition_of(batch);
  auto noise = at::randn(x0.sizes(), generator_, torch::kFloat32);
  auto t = torch::sigmoid(at::randn({batch.count}, generator_, torch::kFloat32) *
                            settings_.logit_normal_std +
                          settings_.logit_normal_mean);
  if (model_options_.conditioning != "none")
    cond.is_null = at::rand({batch.count}, generator_, torch::kFloat32)
                     .lt(settings_.condition_dropout);
  auto prediction = model_->forward(interpolate_flow(x0, noise, t), t, cond);
  auto loss = flow_matching_loss(prediction, x0, noise);
  // Gradients are summed as (mean loss x samples) so that apply_step() can divide by the total.
  (loss * static_cast<double>(batch.count)).backward();
  double value = loss.item<double>();
  accumulated_samples_ += batch.count;
  accumulated_loss_ += value * static_cast<double>(batch.count);
  return value;
}

double diffusion_trainer::learning_rate(int64_t step) const {
  if (settings_.warmup_steps <= 0 || step >= settings_.warmup_steps)
    return settings_.lr;
  return settings_.lr * static_cast<double>(step + 1) /
         static_cast<double>(settings_.warmup_steps);
}

step_result diffusion_trainer::apply_step() {
  if (accumulated_samples_ == 0) {
    step_result result;
    result.step = step_;
    return result;
  }
  parameters_->gradients().div_(static_cast<double>(accumulated_samples_));
  return update_from_gradient_buffer();
}

std::vector<float> diffusion_trainer::mean_gradient() const {
  const auto& grads = parameters_->gradients();
  std::vector<float> out(static_cast<size_t>(grads.numel()));
  auto scale = accumulated_samples_ > 0 ? 1.0f / static_cast<float>(accumulated_samples_) : 0.0f;
  const float* g = grads.data_ptr<float>();
  for (size_t i = 0; i < out.size(); ++i)
    out[i] = g[i] * scale;
  return out;
}

step_result diffusion_trainer::apply_gradient(std::span<const float> mean_gradient) {
  auto grads = parameters_->gradients();
  if (static_cast<int64_t>(mean_gradient.size()) != grads.numel())
    throw std::invalid_argument("averaged gradient has the wrong size");
  torch::NoGradGuard no_grad;
  grads.copy_(torch::from_blob(const_cast<float*>(mean_gradient.data()),
                               {static_cast<int64_t>(mean_gradient.size())}, torch::kFloat32));
  return update_from_gradient_buffer();
}

void diffusion_trainer::discard_accumulation() {
  parameters_->zero_gradients();
  accumulated_samples_ = 0;
  accumulated_loss_ = 0;
}

void diffusion_trainer::set_parameters(std::span<const float> values) {
  auto params = parameters_->values();
  if (static_cast<int64_t>(values.size()) != params.numel())
    throw std::invalid_argument("parameter vector has the wrong size");
  torch::NoGradGuard no_grad;
  params.copy_(torch::from_blob(const_cast<float*>(values.data()),
                                {static_cast<int64_t>(values.size())}, torch::kFloat32));
}

// The gradient buffer holds a mean gradient: clip, step AdamW, update the EMA, reset.
step_result diffusion_trainer::update_from_gradient_buffer() {
  torch::NoGradGuard no_grad;
  auto grads = parameters_->gradients();
  double norm = grads.norm().item<double>();
  if (settings_.grad_clip > 0 && norm > settings_.grad_clip)
    grads.mul_(settings_.grad_clip / (norm + 1e-6));
  double lr = learning_rate(step_);
  auto values = parameters_->values();
  optimizer_->step(values, grads, lr);
  // EMA warm-up (as in many DiT trainers) so short runs are not dominated by the initial weights.
  double decay = std::min(settings_.ema_decay, (1.0 + step_) / (10.0 + step_));
  ema_parameters_->values().lerp_(values, 1.0 - decay);
  ++step_;
  step_result result{step_,
                     accumulated_samples_ > 0
                       ? accumulated_loss_ / static_cast<double>(accumulated_samples_)
                       : 0.0,
                     norm, lr, accumulated_samples_};
  parameters_->zero_gradients();
  accumulated_samples_ = 0;
  accumulated_loss_ = 0;
  return result;
}

step_result diffusion_trainer::train_step(const training_batch& batch) {
  accumulate(batch);
  return apply_step();
}

void diffusion_trainer::set_step(int64_t step) {
  step_ = step;
}

torch::Tensor diffusion_trainer::rng_state() const {
  return generator_.get_state();
}

void diffusion_trainer::set_rng_state(const torch::Tensor& state) {
  generator_.set_state(state);
}

} // namespace ddactor
