#pragma once
// Text to images with a Stable Diffusion pipeline, as StableDiffusionPipeline.__call__ (diffusers
// v0.25.1) does it:
//
//   prompts -> text encoder -> c;  negative prompt (or "") -> c_u
//   x_T ~ N(0, I) (seeded) at (height / 8, width / 8) x 4
//   for each step: e = e_u + cfg * (e_c - e_u)   (one UNet call on the batch [c_u; c])
//                  x = sampler.step(e, t, x)       (DDIM, EulerDiscrete or DPM-Solver++ 2M)
//   images = VAE decode(x / scaling_factor), clamped to [-1, 1]
//
// The sampler is built from the folder's scheduler_config.json (its training schedule, its
// timestep spacing where the class reads it), as `Sampler.from_config(pipe.scheduler.config)`.

#include <torch/torch.h>

#include <optional>
#include <string>
#include <vector>

#include "models/sd/latent_samplers.hpp"
#include "models/sd/sd_pipeline.hpp"

namespace ddactor {

struct sd_sampling_settings {
  latent_sampler_kind sampler = latent_sampler_kind::dpm_solver_multistep;
  int64_t steps = 25;
  /// Classifier-free guidance; 1: the conditional branch alone.
  double cfg_scale = 7.5;
  uint64_t seed = 0;
  /// Pixels; multiples of the VAE's scale factor times the UNet's (64 for SD).
  int64_t width = 512;
  int64_t height = 512;
  std::string negative_prompt;
};

/// The sampler a name stands for: "ddim", "euler" (EulerDiscrete) or "dpm++2m".
std::optional<latent_sampler_kind> sd_sampler_named(const std::string& name);
std::string sd_sampler_name(latent_sampler_kind kind);

/// The folder's own scheduler where it is one of the three, else DPM-Solver++ 2M.
latent_sampler_kind default_sd_sampler(const scheduler_config& config);

struct sd_generation {
  torch::Tensor images;  // (prompts * per_prompt, 3, height, width) in [-1, 1]; undefined if stopped
  sampling_outcome outcome = sampling_outcome::completed;
  int64_t steps_done = 0;
};

/// `per_prompt` images for each prompt, in prompt order, with `unet` (the pipeline's, or a
/// fine-tuned one). Without gradients.
sd_generation generate_sd_images(sd_pipeline& pipeline, unet2d_condition& unet,
                                 const std::vector<std::string>& prompts, int64_t per_prompt,
                                 const sd_sampling_settings& settings,
                                 const sampling_callbacks& callbacks = {});

} // namespace ddactor
