#pragma once
// What every trainable model of ddactor shares, without actors: the model and its EMA copy as
// flat parameter buffers, flat AdamW, the learning-rate schedule, the random stream of the loss,
// and the arithmetic of a step split in two so that a swarm can average in between:
//
//   accumulate(batch)...  adds (mean loss x batch size) gradients to the flat gradient buffer
//   apply_step()          divides by the samples seen, clips, steps AdamW, updates the EMA
//
// A subclass supplies the modules (attach_modules() in its constructor) and the loss of a batch
// (batch_loss()); diffusion_trainer trains the DiT, router_trainer the DDM router, sd_trainer a
// Stable Diffusion UNet or its LoRA adapters.
//
// The EMA copy is optional: a subclass that attaches none (a full fine-tune of a large model
// whose memory is better spent elsewhere, train.ema_decay = 0) samples from and checkpoints the
// trained weights themselves; ema_module() and ema_parameters() then name those.
//
// Not thread-safe: one thread trains.

#include <torch/torch.h>

#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "models/adamw.hpp"
#include "models/flat_parameters.hpp"
#include "models/loss_scaler.hpp"
#include "models/mixed_precision.hpp"
#include "runtime/training_batch.hpp"

namespace ddactor {

struct trainer_settings {
  double lr = 3e-4;
  int64_t warmup_steps = 100;
  double grad_clip = 1.0;
  double ema_decay = 0.999;
  double logit_normal_mean = 0.0;
  double logit_normal_std = 1.0;
  double condition_dropout = 0.1;
  adamw_options adamw;
  /// The forward and backward passes' precision (models/mixed_precision.hpp); the weights,
  /// gradients and optimizer state are fp32 whatever it is.
  training_precision precision = training_precision::fp32;
  /// run.device: the model, its EMA copy, the flat gradient buffer and AdamW's state live
  /// there (models/device_transfer.hpp). The loss's random draws are made on the host whatever
  /// the device, so that a step on a GPU draws what the same step on the CPU draws.
  torch::Device device = torch::kCPU;
  /// Seeds the initial weights: peers of a swarm share it, so they start identical.
  uint64_t seed = 0;
  /// Seeds the noise, times and condition dropout: peers of a swarm differ here.
  uint64_t noise_seed = 0;
  /// Dynamic loss scaling (models/loss_scaler.hpp), on for train.precision = "fp16": the loss
  /// is scaled up before backward and the gradients back down; a step whose gradient is not
  /// finite is skipped (step_result::skipped) and the scale backs off.
  bool loss_scaling = false;
  /// data.micro_batch_size: accumulate() runs forward and backward on at most this many
  /// examples at a time (0: the whole batch at once). The gradients are the whole batch's (to
  /// float rounding), with the activation memory of one micro-batch.
  int64_t micro_batch_size = 0;
};

struct step_result {
  int64_t step = 0;        // optimizer steps taken so far, this one included
  double loss = 0;         // mean loss over the samples of this step
  double grad_norm = 0;    // before clipping
  double lr = 0;
  int64_t samples = 0;     // samples in this step
  bool skipped = false;    // loss scaling: the gradient overflowed; nothing changed
};

class model_trainer {
 public:
  virtual ~model_trainer() = default;
  model_trainer(const model_trainer&) = delete;
  model_trainer& operator=(const model_trainer&) = delete;

  /// Forward and backward on one batch (in micro-batches where settings say so); gradients add
  /// up until apply_step(). Returns its loss.
  double accumulate(const training_batch& batch);
  int64_t accumulated_samples() const { return accumulated_samples_; }

  /// One optimizer step from the accumulated gradients (a no-op returning step() when none).
  step_result apply_step();

  /// The accumulated gradients as a mean over their samples (a copy; accumulation goes on).
  std::vector<float> mean_gradient() const;

  /// mean_gradient(), and the accumulation starts again: a swarm computes the next epoch's
  /// gradients while this one's are averaged. With loss scaling, a gradient that overflowed
  /// comes back as zeros (never inf or NaN, which peers refuse as poison), the scale backs off
  /// and gradient_overflowed() says so: the peer then weighs it as almost nothing.
  std::vector<float> take_mean_gradient();
  bool gradient_overflowed() const { return gradient_overflowed_; }

  /// One optimizer step with `mean_gradient` (e.g. the swarm's average) in place of the local
  /// one; with loss scaling skipped when it is not finite or all zero (every contribution
  /// overflowed): every peer of a round sees the same average, so all skip the same step.
  /// Gradients accumulated meanwhile (the next epoch's, computed while this one was being
  /// averaged) are left alone; the result's loss and samples are those of no accumulation (0).
  /// Every peer that applies the same gradient to the same state ends in the same state.
  step_result apply_gradient(std::span<const float> mean_gradient);

  /// The step ahead's step (averaging.step_ahead): apply_gradient with this peer's own gradient
  /// as a guess of the swarm's average, of which its samples are `own_share`; the caller takes
  /// it back (restore_shared_state) before the average is applied. A share's noise makes the
  /// guess larger than the average, and any way that makes every peer's guess fall short of
  /// the swarm's step alike is a bias the guesses share (their noise cancels in the mean, the
  /// bias does not): train.grad_clip scales it as if its norm were `clip_as_norm` (the last
  /// average's; clipped by its own norm, it would be clipped harder), and AdamW's second moment
  /// takes `own_share` of its square (flat_adamw::guess_step). The result's grad_norm is the
  /// guess's own.
  step_result apply_guess(std::span<const float> guess, std::optional<double> clip_as_norm,
                          double own_share);

  /// Several trainers of one node (as PyTorch's DDP): `sum` replaces a tensor by its sum over
  /// the node's trainers (node_reducer::sum_). This trainer then holds the node's accumulated
  /// gradients, samples and loss, and apply_step() takes the node's step, the same on every
  /// trainer of the node.
  void sum_accumulation(const std::function<void(torch::Tensor&)>& sum);

  /// Drops the gradients accumulated so far (e.g. after downloading newer state).
  void discard_accumulation();

  /// Overwrites the parameters (e.g. with the swarm's average).
  void set_parameters(std::span<const float> values);

  /// accumulate + apply_step.
  step_result train_step(const training_batch& batch);

  /// Linear warm-up, then constant.
  double learning_rate(int64_t step) const;

  torch::nn::Module& module() { return *module_; }
  /// The EMA copy, or module() when there is none.
  torch::nn::Module& ema_module() { return ema_module_ ? *ema_module_ : *module_; }
  bool has_ema() const { return ema_module_ != nullptr; }
  flat_parameters& parameters() { return *parameters_; }
  flat_parameters& ema_parameters() { return ema_parameters_ ? *ema_parameters_ : *parameters_; }
  flat_adamw& optimizer() { return *optimizer_; }
  const trainer_settings& settings() const { return settings_; }

  int64_t step() const { return step_; }
  /// Steps skipped for a gradient that was not finite (loss scaling only).
  int64_t skipped_steps() const { return skipped_steps_; }
  /// The loss scale now (1 without loss scaling).
  double loss_scale() const { return scaler_ ? scaler_->scale() : 1.0; }
  loss_scaler* scaler() { return scaler_ ? &*scaler_ : nullptr; }
  void set_step(int64_t step) { step_ = step; }

  /// The state of the loss's random stream (for exact resumption).
  torch::Tensor rng_state() const;
  void set_rng_state(const torch::Tensor& state);

  /// What the model is, for checkpoint metadata ("model.kind" and its shape).
  virtual std::map<std::string, std::string> describe() const = 0;

  /// When write_exports runs: beside every checkpoint, or once when training ends.
  enum class export_moment { checkpoint, end };
  /// Writes what users take out of a run in other tools' formats (an SD run's LoRA file or
  /// diffusers folder) into `run_dir`; nothing by default. Runs on the training thread.
  virtual void write_exports(const std::filesystem::path& run_dir, export_moment moment) {}

 protected:
  explicit model_trainer(trainer_settings settings);

  /// Called once by the subclass's constructor with its freshly built model and EMA copy (null:
  /// no EMA). Only the model's parameters that require a gradient are trained.
  void attach_modules(std::shared_ptr<torch::nn::Module> model,
                      std::shared_ptr<torch::nn::Module> ema);

  /// A host tensor of a batch (images, labels, latents) on the training device.
  torch::Tensor on_device(const torch::Tensor& host) const;

  /// The mean loss of a batch, with its graph (the model is in training mode).
  virtual torch::Tensor batch_loss(const training_batch& batch, at::Generator& generator) = 0;

  trainer_settings settings_;

 private:
  /// Forward and backward on one (micro-)batch: its gradients and samples add up.
  double accumulate_slice(const training_batch& batch);

  /// How a step treats a gradient that is a guess of another (apply_guess).
  struct guess_terms {
    std::optional<double> clip_as_norm;
    double own_share = 1.0;
  };

  // apply_gradient and apply_guess: the averaged (or guessed) vector in place of the local one.
  step_result apply_floats(std::span<const float> mean_gradient, const guess_terms& guess);

  // Clips `mean_gradient` in place, steps AdamW and the EMA; the result carries loss and samples.
  step_result update_from(torch::Tensor mean_gradient, double loss, int64_t samples,
                          const guess_terms& guess);

  std::shared_ptr<torch::nn::Module> module_;
  std::shared_ptr<torch::nn::Module> ema_module_;
  std::unique_ptr<flat_parameters> parameters_;
  std::unique_ptr<flat_parameters> ema_parameters_;
  std::unique_ptr<flat_adamw> optimizer_;
  std::optional<loss_scaler> scaler_;
  at::Generator generator_;
  int64_t step_ = 0;
  int64_t accumulated_samples_ = 0;
  double accumulated_loss_ = 0;
  int64_t skipped_steps_ = 0;
  bool gradient_overflowed_ = false;
};

} // namespace ddactor
