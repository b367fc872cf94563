#pragma once
// A Stable Diffusion pipeline as ddactor trains and samples it, built from a diffusers folder
// (`model.pretrained`) with the folder readers of this directory:
//
//   unet/          -> unet2d_condition           the model that is trained (optional: a latent
//                                                 DiT brings its own denoiser)
//   vae/           -> autoencoder_kl             frozen: images <-> latents
//   text_encoder/  -> clip_text_model            frozen: captions -> prompt embeddings
//   tokenizer/     -> clip_tokenizer             captions -> ids (77, padded)
//   scheduler/     -> scheduler_config           the training noise schedule and the samplers
//
// Weights load in float32, the training precision, whatever the files hold (an fp16-only folder
// loads as well: module_state_loading converts tensor by tensor). The VAE and the text encoder are
// frozen when loaded: eval mode, no parameter needs a gradient, so no optimizer, flat buffer or
// swarm round ever sees them.
//
// Every problem a user can cause (a missing part or file, a damaged or truncated weights file,
// weights whose keys or shapes do not fit the config) ends in one std::runtime_error whose
// message names the file, and the key where there is one.
//
// Thread-safety: loading is not shared; a loaded pipeline is used by one thread at a time.

#include <torch/torch.h>

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "models/sd/autoencoder_kl.hpp"
#include "models/sd/clip_text_model.hpp"
#include "models/sd/diffusers_folder.hpp"
#include "models/sd/memory_saving.hpp"
#include "models/sd/noise_schedule.hpp"
#include "models/sd/scheduler_config.hpp"
#include "models/sd/unet2d_condition.hpp"
#include "runtime/clip_tokenizer.hpp"

namespace ddactor {

struct sd_pipeline_options {
  /// Build and load the UNet (a latent DiT needs only the VAE, the text encoder and tokenizer).
  bool unet = true;
  /// Set on the UNet once loaded.
  memory_saving_options memory;
};

struct sd_pipeline {
  diffusers_folder folder;
  unet2d_condition unet{nullptr};  // null when not requested
  autoencoder_kl vae{nullptr};
  clip_text_model text_encoder{nullptr};
  std::shared_ptr<const clip_tokenizer> tokenizer;
  std::optional<scheduler_config> scheduler;
  /// The training side of the scheduler config: betas, prediction type.
  std::optional<noise_schedule> schedule;

  /// Where the parts run (to()); inputs of the functions below are moved there, their results
  /// stay there.
  torch::Device device = torch::kCPU;
  /// Moves every part that was built to `target`.
  void to(const torch::Device& target);

  /// The latent channels and the pixels per latent pixel (8 for SD).
  int64_t latent_channels() const;
  int64_t vae_scale_factor() const;

  /// Prompt embeddings (N, 77, C) for the captions, as StableDiffusionPipeline.encode_prompt
  /// computes them (padded to the tokenizer's model_max_length, last hidden state), without
  /// gradients. The empty string is the unconditional prompt of classifier-free guidance.
  torch::Tensor encode_prompts(const std::vector<std::string>& prompts);

  /// The diffusion model's latents for images (N, 3, H, W) in [-1, 1]: the mean of the VAE's
  /// latent distribution times scaling_factor, without gradients (the mean, not a sample, so
  /// that a latent computed now equals one cached earlier).
  torch::Tensor encode_images(const torch::Tensor& images);
  /// Images in about [-1, 1] from latents, without gradients.
  torch::Tensor decode_latents(const torch::Tensor& latents);
};

/// Reads and checks `root` (read_diffusers_folder), then builds and loads each part. Throws
/// std::runtime_error naming the file (and key) for anything that does not fit.
sd_pipeline load_sd_pipeline(const std::filesystem::path& root,
                             const sd_pipeline_options& options = {});

/// The parts a pipeline needs from a folder, for callers that only check it.
std::set<diffusers_part> sd_required_parts(bool with_unet);

/// A digest of what the frozen parts compute from (the VAE's and text encoder's configs and
/// weights, the tokenizer's files), so that data cached from them can tell when they changed.
/// Reads those files once.
uint64_t frozen_parts_digest(const diffusers_folder& folder);

} // namespace ddactor
