#pragma once
// The DiT trained in a Stable Diffusion folder's latent space, the setting of Decentralized
// Diffusion Models (McAllister et al. 2025): model.latent = true with model.pretrained.
//
//   image (3, H, W) --frozen VAE--> latents (C, H/8, W/8) x scaling_factor  = the DiT's "image"
//   caption --frozen CLIP text encoder--> states (77, W)                   = the DiT's context
//
// The latents and states come from the latent cache (models/sd/latent_cache.hpp), or are
// computed per batch with data.cache_latents = false. Training is the DiT's flow matching,
// unchanged; caption dropout replaces a caption's states by the empty prompt's (the null
// condition of classifier-free guidance, as Stable Diffusion does). Only the DiT trains: the
// VAE and text encoder stay frozen and are never averaged.
//
// Not thread-safe: one thread trains.

#include <torch/torch.h>

#include <filesystem>
#include <memory>

#include "models/diffusion_trainer.hpp"
#include "models/sd/sd_pipeline.hpp"

namespace ddactor {

/// `pixel_shape` as make_dit_options gives it for the run (image_size = data.resolution in
/// pixels; conditioning "text_embedding" or "none"), mapped onto `pipeline`'s latent space:
/// its latent channels, resolution / vae scale factor, its text encoder's state shape. Throws
/// std::invalid_argument when the resolution is no multiple of the VAE's scale factor.
dit_options latent_dit_options(dit_options pixel_shape, const sd_pipeline& pipeline,
                               const torch::Tensor& empty_prompt_embedding);

class latent_dit_trainer : public diffusion_trainer {
 public:
  /// Loads the VAE, text encoder and tokenizer of `pretrained` (throws std::runtime_error naming
  /// the file for a folder that does not fit) and builds the DiT for its latent space.
  static std::unique_ptr<latent_dit_trainer> create(const dit_options& pixel_shape,
                                                    const std::filesystem::path& pretrained,
                                                    trainer_settings settings);

  sd_pipeline& pipeline() { return pipeline_; }
  /// The empty prompt's states (1, L, W): caption dropout's replacement, guidance's null.
  const torch::Tensor& empty_prompt_embedding() const { return empty_embedding_; }

  std::map<std::string, std::string> describe() const override;

 protected:
  torch::Tensor batch_loss(const training_batch& batch, at::Generator& generator) override;

 private:
  latent_dit_trainer(sd_pipeline pipeline, torch::Tensor empty_embedding, dit_options shape,
                     std::filesystem::path pretrained, trainer_settings settings);

  sd_pipeline pipeline_;
  torch::Tensor empty_embedding_;
  std::filesystem::path pretrained_;
};

} // namespace ddactor
