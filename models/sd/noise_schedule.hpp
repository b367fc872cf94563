#pragma once
// The discrete-time noise schedule of Stable Diffusion's DDPM training (Ho et al. 2020), as
// diffusers v0.25.1 builds it from a scheduler_config.json:
//
//   betas            linear:            linspace(beta_start, beta_end, T)            (float32)
//                    scaled_linear:     linspace(sqrt(beta_start), sqrt(beta_end), T)^2  (SD)
//                    squaredcos_cap_v2: 1 - abar(t+1)/abar(t), abar(t) = cos^2((t/T + 0.008)
//                                       / 1.008 * pi/2), at most 0.999 (Nichol & Dhariwal 2021)
//   alphas_cumprod   abar_t = prod_{s<=t} (1 - beta_s)
//   add_noise        x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) noise
//   velocity         v   = sqrt(abar_t) noise - sqrt(1 - abar_t) x0    (Salimans & Ho 2022)
//   training target  noise for "epsilon" models (SD 1.x, 2.x base), v for "v_prediction"
//                    (SD 2.x 768-v)
//   snr              abar_t / (1 - abar_t), for min-SNR loss weighting (Hang et al. 2023)
//
// in float32 with the same operations as diffusers, so the results agree bit for bit or to a
// few float32 roundings. Every scheduler class shares this; the samplers (latent_samplers.hpp)
// build on it.
//
// Thread-safety: immutable after construction; use from any number of threads.

#include <torch/torch.h>

#include <cstdint>
#include <vector>

#include "models/sd/scheduler_config.hpp"
#include "models/sd/timestep_spacing.hpp"

namespace ddactor {

enum class beta_schedule { linear, scaled_linear, squaredcos_cap_v2 };

// What the denoising model predicts.
enum class prediction_type { epsilon, v_prediction };

struct noise_schedule_options {
  int64_t num_train_timesteps = 1000;
  double beta_start = 0.0001;
  double beta_end = 0.02;
  beta_schedule betas = beta_schedule::linear;
  prediction_type prediction = prediction_type::epsilon;
  // Where inference_timesteps() (DDPM's set_timesteps) puts its steps.
  timestep_spacing spacing = timestep_spacing::leading;
  int64_t steps_offset = 0;

  timestep_grid grid() const { return {num_train_timesteps, spacing, steps_offset}; }
};

// The options of a config, keys it lacks taking diffusers' defaults (timestep_spacing: the
// default of the class being built, which pipelines may choose to differ from the file's).
// Throws scheduler_config_error naming the key for trained_betas, rescale_betas_zero_snr, a
// prediction type other than epsilon and v_prediction, or any other unknown value.
noise_schedule_options noise_schedule_options_from(const scheduler_config& config,
                                                   timestep_spacing class_default_spacing);
// The same for the config's own class (DDPM, DDIM, PNDM, LMSDiscrete, EulerDiscrete,
// EulerAncestralDiscrete, DPMSolverMultistep, UniPCMultistep: the classes SD checkpoints ship,
// which all build betas this way); throws scheduler_config_error for any other _class_name.
noise_schedule_options noise_schedule_options_from(const scheduler_config& config);

class noise_schedule {
public:
  explicit noise_schedule(const noise_schedule_options& options = {});

  const noise_schedule_options& options() const { return options_; }
  int64_t num_train_timesteps() const { return options_.num_train_timesteps; }

  // [T] float32 on the CPU.
  const torch::Tensor& betas() const { return betas_; }
  const torch::Tensor& alphas() const { return alphas_; }
  const torch::Tensor& alphas_cumprod() const { return alphas_cumprod_; }

  // `timesteps` is an integer tensor of shape [B], one timestep (0 .. T-1) per row of `original`
  // ([B, ...]); the results have the shape and dtype of `original`, on its device.
  torch::Tensor add_noise(const torch::Tensor& original, const torch::Tensor& noise,
                          const torch::Tensor& timesteps) const;
  torch::Tensor velocity(const torch::Tensor& original, const torch::Tensor& noise,
                         const torch::Tensor& timesteps) const;
  // What the model learns to output: the noise, or the velocity.
  torch::Tensor training_target(const torch::Tensor& original, const torch::Tensor& noise,
                                const torch::Tensor& timesteps) const;

  // Signal-to-noise ratio abar_t / (1 - abar_t) per timestep, computed as diffusers'
  // training_utils.compute_snr does: float32, the shape of `timesteps`, on its device.
  torch::Tensor snr(const torch::Tensor& timesteps) const;

  // DDPMScheduler.set_timesteps(steps): descending training timesteps to sample at.
  std::vector<int64_t> inference_timesteps(int64_t steps) const;

private:
  // alphas_cumprod[timesteps] ** 0.5 and (1 - alphas_cumprod[timesteps]) ** 0.5, shaped to
  // broadcast over `like` ([B, 1, 1, ...]) in its dtype and on its device.
  std::pair<torch::Tensor, torch::Tensor> signal_and_noise_scales(
      const torch::Tensor& timesteps, const torch::Tensor& like) const;

  noise_schedule_options options_;
  torch::Tensor betas_;
  torch::Tensor alphas_;
  torch::Tensor alphas_cumprod_;
};

} // namespace ddactor
