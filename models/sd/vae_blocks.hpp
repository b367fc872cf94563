#pragma once
// The resolution levels of the SD VAE (AutoencoderKL), as diffusers builds them. They are the
// UNet's levels without time embedding, text or skip connections:
//
//   DownEncoderBlock2D: [resnet] x layers -> downsample (padding 0: zeros bottom and right)
//   UpDecoderBlock2D:   [resnet] x layers -> upsample
//   UNetMidBlock2D:     resnet -> spatial self-attention (one head over all channels, its own
//                       GroupNorm, residual) -> resnet
//
// GroupNorm eps is 1e-6 throughout the VAE.

#include <torch/torch.h>

#include "models/sd/activation_function.hpp"

namespace ddactor {

/// What every level of one VAE shares, from its config.
struct vae_level_options {
  int64_t norm_groups = 32;
  activation_function activation = activation_function::silu;
};

struct vae_down_block_impl : torch::nn::Module {
  vae_down_block_impl(const vae_level_options& level, int64_t in_channels, int64_t out_channels,
                      int64_t layers, bool add_downsample);
  torch::Tensor forward(const torch::Tensor& x);

  torch::nn::ModuleList resnets;
  torch::nn::ModuleList downsamplers;  // registered where add_downsample
};
TORCH_MODULE_IMPL(vae_down_block, vae_down_block_impl);

struct vae_up_block_impl : torch::nn::Module {
  vae_up_block_impl(const vae_level_options& level, int64_t in_channels, int64_t out_channels,
                    int64_t layers, bool add_upsample);
  torch::Tensor forward(const torch::Tensor& x);

  torch::nn::ModuleList resnets;
  torch::nn::ModuleList upsamplers;  // registered where add_upsample
};
TORCH_MODULE_IMPL(vae_up_block, vae_up_block_impl);

struct vae_mid_block_impl : torch::nn::Module {
  vae_mid_block_impl(const vae_level_options& level, int64_t channels);
  torch::Tensor forward(const torch::Tensor& x);

  torch::nn::ModuleList attentions;
  torch::nn::ModuleList resnets;
};
TORCH_MODULE_IMPL(vae_mid_block, vae_mid_block_impl);

} // namespace ddactor
