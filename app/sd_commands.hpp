#pragma once
// The commands' Stable Diffusion side (model.pretrained): the examples a run trains on, sampling
// from a fine-tune, and exporting one as a diffusers folder.

#include <filesystem>
#include <memory>

#include "app/commands.hpp"
#include "config/run_config.hpp"
#include "models/sd/latent_cache.hpp"
#include "runtime/run_data.hpp"
#include "runtime/sd_examples.hpp"

namespace ddactor {

/// The run's examples from data.path: encoded into <run dir>/latent_cache/ (a DDM's experts
/// share <ddm root>/latent_cache/) unless
/// data.cache_latents is off (then pixels and captions in memory). Loads the folder's VAE and
/// text encoder for it and frees them after.
std::shared_ptr<const sd_example_set> load_latent_examples(const run_config& config);

/// What a run trains on: the image/label data, or with model.pretrained the latent examples
/// (either one of the DDM split's clusters where the run is an expert).
struct training_examples {
  run_data data;
  std::shared_ptr<const sd_example_set> latent;
};
training_examples load_training_examples(const run_config& config);

/// How the run's data becomes those examples (folder, cache, resolution, buckets).
sd_data_options latent_data_options(const run_config& config, const sd_pipeline& pipeline);

/// `ddactor sample` for a Stable Diffusion run: the newest checkpoint's weights (LoRA adapters
/// or the whole UNet; the pretrained model itself when the run has no checkpoint yet) sample one
/// row of request.count images per prompt. Ctrl-C stops between two steps.
int sd_sample_command(const run_config& config, const sample_request& request);

/// `ddactor export --out DIR`: the newest checkpoint (or the given one) as a diffusers folder:
/// its UNet (a full fine-tune's, or the pretrained one with the LoRA adapters merged into its
/// weights) with the other parts of model.pretrained. The EMA weights unless raw_weights.
int export_command(const run_config& config, const std::filesystem::path& out,
                   const std::filesystem::path& checkpoint, bool raw_weights);

} // namespace ddactor
