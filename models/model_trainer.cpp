// Flat-buffer training arithmetic shared by every model; see model_trainer.hpp.
#include "models/model_trainer.hpp"

#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "models/device_transfer.hpp"
#include "runtime/training_batch_slice.hpp"

namespace ddactor {

model_trainer::model_trainer(trainer_settings settings)
  : settings_(settings),
    generator_(at::make_generator<at::CPUGeneratorImpl>(settings.noise_seed)) {
  if (settings_.loss_scaling)
    scaler_.emplace();
}

namespace {

bool all_finite(const torch::Tensor& values) {
  return torch::isfinite(values).all().item<bool>();
}

} // namespace

void model_trainer::attach_modules(std::shared_ptr<torch::nn::Module> model,
                                   std::shared_ptr<torch::nn::Module> ema) {
  module_ = std::move(model);
  ema_module_ = std::move(ema);
  // On the device before flattening: the flat buffers take the parameters' device.
  module_->to(settings_.device);
  if (ema_module_)
    ema_module_->to(settings_.device);
  parameters_ = std::make_unique<flat_parameters>(*module_);
  if (ema_module_) {
    ema_parameters_ = std::make_unique<flat_parameters>(*ema_module_);
    if (ema_parameters_->size() != parameters_->size())
      throw std::invalid_argument("the EMA copy's parameters do not match the model's");
    ema_parameters_->values().copy_(parameters_->values());
    for (auto& p : ema_module_->parameters())
      p.set_requires_grad(false);
    ema_module_->eval();
  }
  optimizer_ =
    std::make_unique<flat_adamw>(parameters_->size(), settings_.adamw, settings_.device);
}

double model_trainer::accumulate(const training_batch& batch) {
  if (batch.count <= 0)
    return 0;
  if (!batch.consistent())
    throw std::invalid_argument("batch images do not match its shape");
  module_->train();
  const int64_t micro = settings_.micro_batch_size;
  if (micro <= 0 || batch.count <= micro)
    return accumulate_slice(batch);
  // Micro-batches: each draws its randomness for the whole batch from the same generator state
  // and keeps its rows (models/slice_draws.hpp), so every example is treated as in the whole
  // batch; after the last, the generator stands where the whole batch would have left it.
  const auto start = generator_.get_state();
  double loss_sum = 0;
  for (int64_t offset = 0; offset < batch.count; offset += micro) {
    generator_.set_state(start);
    const auto slice = slice_of_batch(batch, offset, std::min(micro, batch.count - offset));
    loss_sum += accumulate_slice(slice) * static_cast<double>(slice.count);
  }
  return loss_sum / static_cast<double>(batch.count);
}

double model_trainer::accumulate_slice(const training_batch& batch) {
  torch::Tensor loss;
  {
    // Backward runs outside: its ops take the dtypes the forward chose.
    autocast_scope autocast(settings_.precision, settings_.device.type());
    loss = batch_loss(batch, generator_).to(torch::kFloat32);
  }
  // Gradients are summed as (mean loss x samples) so that apply_step() can divide by the total;
  // times the loss scale, which stays the same until the accumulation is taken.
  (loss * (static_cast<double>(batch.count) * loss_scale())).backward();
  double value = loss.item<double>();
  accumulated_samples_ += batch.count;
  accumulated_loss_ += value * static_cast<double>(batch.count);
  return value;
}

step_result model_trainer::apply_step() {
  if (accumulated_samples_ == 0) {
    step_result result;
    result.step = step_;
    return result;
  }
  auto grads = parameters_->gradients();
  grads.div_(static_cast<double>(accumulated_samples_) * loss_scale());
  const double loss = accumulated_loss_ / static_cast<double>(accumulated_samples_);
  if (scaler_ && !scaler_->update(all_finite(grads))) {
    step_result skipped{step_, loss, std::nan(""), learning_rate(step_), accumulated_samples_,
                        true};
    ++skipped_steps_;
    discard_accumulation();
    return skipped;
  }
  auto result = update_from(grads, loss, accumulated_samples_, guess_terms{});
  discard_accumulation();
  return result;
}

std::vector<float> model_trainer::mean_gradient() const {
  auto out = host_floats(parameters_->gradients());
  auto scale = accumulated_samples_ > 0
                 ? 1.0f / static_cast<float>(static_cast<double>(accumulated_samples_) *
                                             loss_scale())
                 : 0.0f;
  for (auto& g : out)
    g *= scale;
  return out;
}

std::vector<float> model_trainer::take_mean_gradient() {
  auto out = mean_gradient();
  discard_accumulation();
  gradient_overflowed_ =
    scaler_ && !scaler_->update(std::all_of(out.begin(), out.end(),
                                            [](float g) { return std::isfinite(g); }));
  if (gradient_overflowed_)
    std::fill(out.begin(), out.end(), 0.0f);
  return out;
}

step_result model_trainer::apply_gradient(std::span<const float> mean_gradient) {
  return apply_floats(mean_gradient, guess_terms{});
}

step_result model_trainer::apply_guess(std::span<const float> guess,
                                       std::optional<double> clip_as_norm, double own_share) {
  return apply_floats(guess, guess_terms{clip_as_norm, own_share});
}

step_result model_trainer::apply_floats(std::span<const float> mean_gradient,
                                        const guess_terms& guess) {
  auto grads = parameters_->gradients();
  if (static_cast<int64_t>(mean_gradient.size()) != grads.numel())
    throw std::invalid_argument("averaged gradient has the wrong size");
  torch::NoGradGuard no_grad;
  auto source = torch::from_blob(const_cast<float*>(mean_gradient.data()),
                                 {static_cast<int64_t>(mean_gradient.size())}, torch::kFloat32);
  if (scaler_ && (!all_finite(source) || !source.ne(0).any().item<bool>())) {
    ++skipped_steps_;
    return step_result{step_, 0.0, std::nan(""), learning_rate(step_), 0, true};
  }
  // The gradient buffer is scratch space while nothing accumulates (gradients mode without
  // overlap); otherwise the step needs one buffer of its own.
  const bool buffer_free = accumulated_samples_ == 0;
  auto scratch = buffer_free ? grads : device_floats(mean_gradient, settings_.device);
  if (buffer_free)
    scratch.copy_(source);
  auto result = update_from(scratch, 0.0, 0, guess);
  if (buffer_free)
    parameters_->zero_gradients();
  return result;
}

void model_trainer::sum_accumulation(const std::function<void(torch::Tensor&)>& sum) {
  auto gradients = parameters_->gradients();
  sum(gradients);
  // Doubles: sample counts stay exact, and the loss sum keeps the precision it had.
  auto totals = torch::tensor({static_cast<double>(accumulated_samples_), accumulated_loss_},
                              torch::kFloat64);
  sum(totals);
  accumulated_samples_ = static_cast<int64_t>(totals[0].item<double>());
  accumulated_loss_ = totals[1].item<double>();
}

void model_trainer::discard_accumulation() {
  parameters_->zero_gradients();
  accumulated_samples_ = 0;
  accumulated_loss_ = 0;
}

void model_trainer::set_parameters(std::span<const float> values) {
  auto params = parameters_->values();
  if (static_cast<int64_t>(values.size()) != params.numel())
    throw std::invalid_argument("parameter vector has the wrong size");
  torch::NoGradGuard no_grad;
  params.copy_(torch::from_blob(const_cast<float*>(values.data()),
                                {static_cast<int64_t>(values.size())}, torch::kFloat32));
}

step_result model_trainer::update_from(torch::Tensor grads, double loss, int64_t samples,
                                       const guess_terms& guess) {
  torch::NoGradGuard no_grad;
  double norm = grads.norm().item<double>();
  const double clip_norm = guess.clip_as_norm.value_or(norm);
  if (settings_.grad_clip > 0 && clip_norm > settings_.grad_clip)
    grads.mul_(settings_.grad_clip / (clip_norm + 1e-6));
  double lr = learning_rate(step_);
  auto values = parameters_->values();
  if (guess.own_share < 1.0)
    optimizer_->guess_step(values, grads, lr, guess.own_share);
  else
    optimizer_->step(values, grads, lr);
  // EMA warm-up (as in many DiT trainers) so short runs are not dominated by the initial weights.
  if (ema_parameters_) {
    double decay = std::min(settings_.ema_decay, (1.0 + step_) / (10.0 + step_));
    ema_parameters_->values().lerp_(values, 1.0 - decay);
  }
  ++step_;
  return step_result{step_, loss, norm, lr, samples};
}

torch::Tensor model_trainer::on_device(const torch::Tensor& host) const {
  return to_training_device(host, settings_.device);
}

step_result model_trainer::train_step(const training_batch& batch) {
  accumulate(batch);
  return apply_step();
}

double model_trainer::learning_rate(int64_t step) const {
  if (settings_.warmup_steps <= 0 || step >= settings_.warmup_steps)
    return settings_.lr;
  return settings_.lr * static_cast<double>(step + 1) /
         static_cast<double>(settings_.warmup_steps);
}

torch::Tensor model_trainer::rng_state() const {
  return generator_.get_state();
}

void model_trainer::set_rng_state(const torch::Tensor& state) {
  generator_.set_state(state);
}

} // namespace ddactor
