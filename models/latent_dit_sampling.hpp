#pragma once
// Sampling a latent DiT (models/latent_dit_trainer.hpp): the prompts and the negative prompt
// through the folder's frozen text encoder, the DiT's flow ODE in latent space with
// classifier-free guidance (the negative prompt, or the empty one, as the null condition), and
// the VAE's decoder back to pixels. Used by the training grid and `ddactor sample`.

#include <torch/torch.h>

#include <string>
#include <vector>

#include "models/dit.hpp"
#include "models/image_generation.hpp"
#include "models/sd/sd_pipeline.hpp"

namespace ddactor {

struct latent_dit_request {
  /// One row of per_prompt images each (none: one row of the empty prompt). An unconditional
  /// model ("none") takes only the empty prompt.
  std::vector<std::string> prompts;
  int64_t per_prompt = 1;
  std::string negative_prompt;
};

/// Images (N, 3, H, W) in [-1, 1], prompt by prompt (per_prompt each). `settings` as for
/// generate_images (steps, sampler, CFG scale, seed, stop); the result does not depend on its
/// batch size. `progress` hears the sampling steps.
torch::Tensor generate_latent_dit_images(dit model, sd_pipeline& pipeline,
                                         const latent_dit_request& request,
                                         generation_settings settings,
                                         const generation_progress& progress = {});

} // namespace ddactor
