#pragma once
// diffusers' AutoencoderKL, the VAE of Stable Diffusion 1.x and 2.x, with diffusers' state_dict
// names. Images (N,3,H,W) in [-1, 1] map to a diagonal Gaussian over latents (N,4,H/8,W/8) and
// latents map back to images:
//
//   encode: conv_in -> down levels -> mid block -> GroupNorm -> SiLU -> conv_out
//           -> quant_conv -> moments = [mean | logvar]
//   decode: post_quant_conv -> conv_in -> mid block -> up levels -> GroupNorm -> SiLU -> conv_out
//
// The diffusion model works on latents multiplied by the config's scaling_factor (0.18215 for
// SD 1.x/2.x), so that they have roughly unit variance; encode_to_latents and decode_latents apply
// it as diffusers' pipelines and training scripts do; encode and decode do not.
//
// Loading a diffusers `vae/` folder, old checkpoints included:
//
//   autoencoder_kl vae(autoencoder_kl_config::from_file(folder / "config.json"));
//   load_module_state(*vae, folder / "diffusion_pytorch_model.safetensors",
//                     autoencoder_kl_state_options());

#include <torch/torch.h>

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "models/sd/activation_function.hpp"
#include "models/sd/diffusers_config.hpp"
#include "models/sd/module_state_loading.hpp"
#include "models/sd/vae_blocks.hpp"

namespace ddactor {

/// The fields of an AutoencoderKL config.json, with diffusers' defaults. Only the block types
/// "DownEncoderBlock2D" and "UpDecoderBlock2D" exist in SD's VAEs, and only they are accepted.
struct autoencoder_kl_config {
  int64_t in_channels = 3;
  int64_t out_channels = 3;
  /// Channels per level; the down and up block type lists have one entry per level.
  std::vector<int64_t> block_out_channels = {64};
  int64_t layers_per_block = 1;
  activation_function act_fn = activation_function::silu;
  int64_t latent_channels = 4;
  int64_t norm_num_groups = 32;
  int64_t sample_size = 32;
  double scaling_factor = 0.18215;
  /// diffusers runs this VAE in float32 even in a float16 pipeline; recorded, not acted on.
  bool force_upcast = true;

  /// Throws diffusers_config_error naming the file and the key.
  static autoencoder_kl_config from_file(const std::filesystem::path& path);
  static autoencoder_kl_config from_config(const diffusers_config& config);

  /// What does not fit together, by config key; empty when the model can be built.
  std::vector<config_problem> problems() const;
  /// Throws std::invalid_argument listing problems(), if any.
  void validate() const;
};

/// The encoder's output distribution, diffusers' DiagonalGaussianDistribution.
struct latent_distribution {
  torch::Tensor mean;
  torch::Tensor logvar;  // clamped to [-30, 20]
  torch::Tensor std;     // exp(logvar / 2)

  /// moments (N, 2 * latent_channels, h, w): mean, then logvar, along the channels.
  static latent_distribution from_moments(const torch::Tensor& moments);

  /// mean + std * noise, for noise of the mean's shape.
  torch::Tensor sample(const torch::Tensor& noise) const;
  /// mean + std * N(0, 1) drawn from `generator` (the default generator if none).
  torch::Tensor sample(std::optional<at::Generator> generator = std::nullopt) const;
  torch::Tensor mode() const { return mean; }
  /// KL divergence from N(0, 1), summed over channels and pixels: (N).
  torch::Tensor kl() const;
};

struct vae_encoder_impl : torch::nn::Module {
  explicit vae_encoder_impl(const autoencoder_kl_config& config);
  /// images (N, in_channels, H, W) -> (N, 2 * latent_channels, H/f, W/f), f = 2^(levels-1).
  torch::Tensor forward(const torch::Tensor& images);

  torch::nn::Conv2d conv_in{nullptr};
  torch::nn::ModuleList down_blocks;
  vae_mid_block mid_block{nullptr};
  torch::nn::GroupNorm conv_norm_out{nullptr};
  torch::nn::Conv2d conv_out{nullptr};
};
TORCH_MODULE_IMPL(vae_encoder, vae_encoder_impl);

struct vae_decoder_impl : torch::nn::Module {
  explicit vae_decoder_impl(const autoencoder_kl_config& config);
  /// latents (N, latent_channels, h, w) -> images (N, out_channels, h*f, w*f).
  torch::Tensor forward(const torch::Tensor& latents);

  torch::nn::Conv2d conv_in{nullptr};
  torch::nn::ModuleList up_blocks;
  vae_mid_block mid_block{nullptr};
  torch::nn::GroupNorm conv_norm_out{nullptr};
  torch::nn::Conv2d conv_out{nullptr};
};
TORCH_MODULE_IMPL(vae_decoder, vae_decoder_impl);

struct autoencoder_kl_impl : torch::nn::Module {
  explicit autoencoder_kl_impl(autoencoder_kl_config config);

  /// images (N, in_channels, H, W) in [-1, 1] -> the distribution of their (unscaled) latents.
  latent_distribution encode(const torch::Tensor& images);
  /// Unscaled latents (N, latent_channels, h, w) -> images, about [-1, 1] (not clamped).
  torch::Tensor decode(const torch::Tensor& latents);

  /// The diffusion model's latents for images: the distribution's mean times scaling_factor.
  torch::Tensor encode_to_latents(const torch::Tensor& images);
  /// As encode_to_latents, with a sample of the distribution instead of its mean (what
  /// diffusers' training scripts use).
  torch::Tensor encode_to_sampled_latents(const torch::Tensor& images,
                                          std::optional<at::Generator> generator = std::nullopt);
  /// Images from the diffusion model's latents: decode(latents / scaling_factor).
  torch::Tensor decode_latents(const torch::Tensor& latents);

  const autoencoder_kl_config& config() const { return config_; }

  vae_encoder encoder{nullptr};
  vae_decoder decoder{nullptr};
  torch::nn::Conv2d quant_conv{nullptr};
  torch::nn::Conv2d post_quant_conv{nullptr};

private:
  autoencoder_kl_config config_;
};
TORCH_MODULE_IMPL(autoencoder_kl, autoencoder_kl_impl);

/// A file key in today's naming: diffusers before 0.14 named the mid-block attention's layers
/// query, key, value and proj_attn (now to_q, to_k, to_v, to_out.0); other keys are unchanged.
std::string autoencoder_kl_current_key(const std::string& file_key);

/// Loading options for AutoencoderKL weight files of either naming (see load_module_state).
module_state_options autoencoder_kl_state_options();

} // namespace ddactor
