#pragma once
// Generating images from a trained DiT: noise from a seeded stream, the flow ODE with guidance,
// in batches that bound memory. Used by sample grids during training, `ddactor sample` and
// `ddactor eval`.

#include <torch/torch.h>

#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "models/dit.hpp"
#include "models/samplers.hpp"
#include "runtime/progress_meter.hpp"

namespace ddactor {

struct generation_settings {
  int steps = 20;
  sampler_kind sampler = sampler_kind::heun;
  double cfg_scale = 2.0;
  uint64_t seed = 0;
  /// Images per forward batch (CFG doubles it).
  int64_t batch_size = 256;
  /// Asked between sampling steps; true stops the generation with work_stopped (Ctrl-C).
  std::function<bool()> stop_requested;
  /// Clamp the result to [-1, 1] (pixels); off for a latent DiT, whose latents are unbounded.
  bool clamp_to_pixel_range = true;
  /// Where the sampling runs (the model's device; generate_images takes it from the model). The
  /// noise is drawn on the host, so a seed gives the same images on any device, and the result
  /// comes back to the host.
  torch::Device device = torch::kCPU;
};

/// Images (N, C, H, W) in [-1, 1] (or latents, see clamp_to_pixel_range) for the N conditions of `cond` (N = cond.batch_size(), or
/// `count` when the model is unconditional). The result does not depend on batch_size.
/// `progress` (optional) is called after every sampling step with (steps done, total steps of
/// all batches), so that long generations can show a rate and an ETA.
using generation_progress = progress_callback;
torch::Tensor generate_images(dit model, const dit_condition& cond,
                              const generation_settings& settings, int64_t count = -1,
                              const generation_progress& progress = {});

struct image_shape {
  int64_t channels = 1;
  int64_t size = 28;
};

/// Makes the velocity field for one batch of conditions (rows of the whole request): a guided
/// DiT, or a DDM ensemble.
using field_factory = std::function<velocity_field(const dit_condition& part, int64_t rows)>;

/// generate_images with any velocity field (e.g. a DDM ensemble); same noise and batching.
torch::Tensor generate_with_field(const field_factory& make_field, const image_shape& shape,
                              const dit_condition& cond, const generation_settings& settings,
                              int64_t count = -1, const generation_progress& progress = {});

/// Labels 0,0,..,1,1,.. (per_class of each class): one grid row per class.
dit_condition class_rows(int64_t num_classes, int64_t per_class);

/// per_prompt copies of each prompt, tokenized.
dit_condition prompt_rows(const std::vector<std::string>& prompts, int64_t per_prompt,
                          int64_t max_bytes);

} // namespace ddactor
