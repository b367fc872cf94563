#pragma once
// Samplers that turn Gaussian noise into Stable Diffusion latents with a trained denoiser: ports
// of three diffusers v0.25.1 schedulers, each giving the same timesteps and the same step() as
// diffusers for the same scheduler_config.json (epsilon and v_prediction models):
//
//   ddim_sampler                  DDIMScheduler, eta = 0 (Song et al. 2021): deterministic,
//                                 x_prev = sqrt(abar_prev) x0 + sqrt(1 - abar_prev) eps
//   euler_discrete_sampler        EulerDiscreteScheduler (Karras et al. 2022): an Euler step of
//                                 the probability-flow ODE in sigma = sqrt((1 - abar) / abar);
//                                 the model sees x / sqrt(sigma^2 + 1) and fractional timesteps
//   dpm_solver_multistep_sampler  DPMSolverMultistepScheduler, DPM-Solver++(2M) (Lu et al. 2022):
//                                 second order from the previous step's x0 estimate, first order
//                                 at the first step (and at the last below 15 steps)
//
// A sampling run, as StableDiffusionPipeline drives it (sample_latents does exactly this):
//
//   set_timesteps(n);  x = noise * init_noise_sigma()
//   for t in timesteps():
//     out = model(scale_model_input(x, t), t);  x = step(out, t, x).prev_sample
//
// Classifier-free guidance belongs to the model function, not here: it runs the conditional and
// unconditional branches and combines them before returning.
//
// Euler and DPM-Solver keep state between steps (the step index; DPM-Solver the last x0
// estimate), so a sampler object runs one sampling at a time, and is not thread-safe.
// set_timesteps starts a new run. The arithmetic is float32 in diffusers' order of operations.

#include <torch/torch.h>

#include <functional>
#include <memory>
#include <optional>
#include <string_view>

#include "models/sd/noise_schedule.hpp"
#include "models/sd/scheduler_config.hpp"

namespace ddactor {

struct latent_step {
  torch::Tensor prev_sample;           // the latents after the step
  torch::Tensor pred_original_sample;  // the step's estimate of the clean latents x0
};

class latent_sampler {
public:
  virtual ~latent_sampler() = default;

  // The diffusers class this sampler reproduces ("DDIMScheduler", ...).
  virtual std::string_view class_name() const = 0;
  virtual const noise_schedule& schedule() const = 0;

  // Chooses `steps` timesteps (1 <= steps <= num_train_timesteps, else std::invalid_argument)
  // and starts a new sampling run.
  virtual void set_timesteps(int64_t steps) = 0;
  // The timesteps of the run, in the order they are sampled: int64, or float32 for Euler (as
  // diffusers); the values the model is called with. Undefined before set_timesteps, except for
  // Euler, which starts on the whole training grid as diffusers does.
  virtual const torch::Tensor& timesteps() const = 0;
  // The initial latents are standard normal noise times this (1 unless a sampler says other).
  virtual double init_noise_sigma() const { return 1.0; }
  // The model's input at `timestep` for the current latents (the latents themselves unless a
  // sampler scales them, as Euler does).
  virtual torch::Tensor scale_model_input(const torch::Tensor& sample, const torch::Tensor&) {
    return sample;
  }
  // One step from `sample` at `timestep` with the model's output there. Throws std::logic_error
  // when the run has no step left (DDIM and DPM-Solver: also before set_timesteps), and
  // std::invalid_argument for a timestep Euler cannot place in timesteps() (DDIM needs none
  // there; DPM-Solver, as diffusers, starts an unknown one at the last step).
  virtual latent_step step(const torch::Tensor& model_output, const torch::Tensor& timestep,
                           const torch::Tensor& sample) = 0;
};

// --- the three samplers, with their options and how a config sets them ---------------------

struct ddim_options {
  noise_schedule_options schedule{.spacing = timestep_spacing::leading};
  bool clip_sample = true;         // clamp the x0 estimate to +-clip_sample_range (SD: false)
  double clip_sample_range = 1.0;
  bool set_alpha_to_one = true;    // the last step's target abar: 1, or abar_0 (SD: false)
};
// Missing keys take DDIMScheduler's defaults. Throws scheduler_config_error for thresholding.
ddim_options ddim_options_from(const scheduler_config& config);

class ddim_sampler final : public latent_sampler {
public:
  explicit ddim_sampler(const ddim_options& options);
  std::string_view class_name() const override { return "DDIMScheduler"; }
  const noise_schedule& schedule() const override { return schedule_; }
  void set_timesteps(int64_t steps) override;
  const torch::Tensor& timesteps() const override { return timesteps_; }
  latent_step step(const torch::Tensor& model_output, const torch::Tensor& timestep,
                   const torch::Tensor& sample) override;

private:
  ddim_options options_;
  noise_schedule schedule_;
  torch::Tensor final_alpha_cumprod_;  // 0-dim: abar after the last step
  torch::Tensor timesteps_;
  int64_t num_inference_steps_ = 0;
};

struct euler_discrete_options {
  noise_schedule_options schedule{.spacing = timestep_spacing::linspace};
};
// Missing keys take EulerDiscreteScheduler's defaults. Throws scheduler_config_error for
// use_karras_sigmas, interpolation_type other than "linear", timestep_type other than
// "discrete".
euler_discrete_options euler_discrete_options_from(const scheduler_config& config);

class euler_discrete_sampler final : public latent_sampler {
public:
  explicit euler_discrete_sampler(const euler_discrete_options& options);
  std::string_view class_name() const override { return "EulerDiscreteScheduler"; }
  const noise_schedule& schedule() const override { return schedule_; }
  void set_timesteps(int64_t steps) override;
  const torch::Tensor& timesteps() const override { return timesteps_; }
  // The largest sigma (diffusers v0.25.1 with linspace or trailing spacing), else
  // sqrt(sigma_max^2 + 1).
  double init_noise_sigma() const override;
  torch::Tensor scale_model_input(const torch::Tensor& sample,
                                  const torch::Tensor& timestep) override;
  latent_step step(const torch::Tensor& model_output, const torch::Tensor& timestep,
                   const torch::Tensor& sample) override;

  // [steps + 1] float32: the noise level at each timestep, then 0.
  const torch::Tensor& sigmas() const { return sigmas_; }

private:
  int64_t current_step_index(const torch::Tensor& timestep);

  euler_discrete_options options_;
  noise_schedule schedule_;
  torch::Tensor timesteps_;
  torch::Tensor sigmas_;
  std::optional<int64_t> step_index_;  // set by the first scale_model_input or step of a run
};

struct dpm_solver_multistep_options {
  noise_schedule_options schedule{.spacing = timestep_spacing::linspace};
  int64_t solver_order = 2;       // 1 or 2
  bool lower_order_final = true;  // first order for the last step(s) below 15 steps
  bool euler_at_final = false;    // first order for the last step always
};
// Missing keys take DPMSolverMultistepScheduler's defaults. Throws scheduler_config_error for
// any algorithm_type but "dpmsolver++", solver_type but "midpoint", solver_order 3, Karras or
// Lu sigmas, a finite lambda_min_clipped, a learned variance_type, thresholding.
dpm_solver_multistep_options dpm_solver_multistep_options_from(const scheduler_config& config);

class dpm_solver_multistep_sampler final : public latent_sampler {
public:
  explicit dpm_solver_multistep_sampler(const dpm_solver_multistep_options& options);
  std::string_view class_name() const override { return "DPMSolverMultistepScheduler"; }
  const noise_schedule& schedule() const override { return schedule_; }
  void set_timesteps(int64_t steps) override;
  const torch::Tensor& timesteps() const override { return timesteps_; }
  latent_step step(const torch::Tensor& model_output, const torch::Tensor& timestep,
                   const torch::Tensor& sample) override;

  // [steps + 1] float32: the noise level at each timestep, then that of timestep 0 (not 0: the
  // last sample keeps a little noise, as in diffusers v0.25.1).
  const torch::Tensor& sigmas() const { return sigmas_; }
  // The order of the update the last step used (1 or 2; 0 before the first step).
  int last_solver_order() const { return last_solver_order_; }

private:
  // The model output as an estimate of x0 (DPM-Solver++ works in data prediction).
  torch::Tensor data_prediction(const torch::Tensor& model_output, const torch::Tensor& sample,
                                int64_t index) const;
  torch::Tensor first_order_update(const torch::Tensor& x0, const torch::Tensor& sample,
                                   int64_t index) const;
  torch::Tensor second_order_update(const torch::Tensor& sample, int64_t index) const;

  dpm_solver_multistep_options options_;
  noise_schedule schedule_;
  torch::Tensor timesteps_;
  torch::Tensor sigmas_;
  std::optional<int64_t> step_index_;
  std::vector<torch::Tensor> x0_history_;  // the last solver_order estimates, newest last
  int64_t lower_order_steps_ = 0;          // steps taken so far, up to solver_order
  int last_solver_order_ = 0;
};

// --- choosing a sampler ------------------------------------------------------------------

enum class latent_sampler_kind { ddim, euler_discrete, dpm_solver_multistep };

// The sampler of a diffusers class name, nullopt for others.
std::optional<latent_sampler_kind> latent_sampler_kind_of(std::string_view class_name);

// The sampler the config's _class_name names; throws scheduler_config_error for any other
// class (naming it and the classes there are) and for unsupported options.
std::unique_ptr<latent_sampler> make_latent_sampler(const scheduler_config& config);
// A sampler of `kind` built from another class's config, as `Kind.from_config(config)`: the
// config's keys, `kind`'s defaults for the rest (so DDIM's "leading" spacing does not carry
// over to Euler unless the file says so).
std::unique_ptr<latent_sampler> make_latent_sampler(latent_sampler_kind kind,
                                                    const scheduler_config& config);

// --- running a sampling ---------------------------------------------------------------------

// The denoiser: its output for the (scaled) latents at a timestep (a 0-dim tensor of
// timesteps()), with guidance already applied.
using latent_denoiser =
    std::function<torch::Tensor(const torch::Tensor& latents, const torch::Tensor& timestep)>;

struct sampling_callbacks {
  std::function<void(int64_t done, int64_t total)> on_progress;  // after every step
  std::function<bool()> stop_requested;  // asked before every step; true ends the run there
};

enum class sampling_outcome { completed, stopped };

struct sampling_result {
  sampling_outcome outcome = sampling_outcome::completed;
  torch::Tensor latents;  // the final latents, or those reached when stopped
  int64_t steps_done = 0;
};

// set_timesteps(steps), then the loop above from `noise` (standard normal), without gradients.
sampling_result sample_latents(latent_sampler& sampler, const latent_denoiser& model,
                               const torch::Tensor& noise, int64_t steps,
                               const sampling_callbacks& callbacks = {});

} // namespace ddactor
