#pragma once
// The resolution levels of the SD UNet, as diffusers builds them:
//
//   down block (DownBlock2D, CrossAttnDownBlock2D):
//     [resnet (-> transformer_2d)] x layers -> downsample (all levels but the last)
//     every output on the way is kept as a skip connection for the up path;
//   mid block (UNetMidBlock2DCrossAttn): resnet -> [transformer_2d -> resnet] x 1;
//   up block (UpBlock2D, CrossAttnUpBlock2D):
//     [concat(x, skip) -> resnet (-> transformer_2d)] x (layers + 1) -> upsample (all but last).
//
// The plain and the cross-attention variant of a level are one class here: the cross-attention
// variant has an `attentions` list, the plain one does not register it, so each produces exactly
// its diffusers state_dict keys (attentions.*, resnets.*, downsamplers.0.* / upsamplers.0.*, in
// diffusers' order).

#include <torch/torch.h>

#include <vector>

#include "models/sd/activation_function.hpp"

namespace ddactor {

/// What every level of one UNet shares, from the UNet config.
struct unet_level_options {
  int64_t time_embedding_channels = 1280;
  int64_t norm_groups = 32;
  double norm_eps = 1e-5;
  activation_function activation = activation_function::silu;
  double dropout = 0.0;
  /// Cross-attention levels only.
  bool cross_attention = false;
  int64_t attention_heads = 8;
  int64_t transformer_layers = 1;
  int64_t cross_attention_dim = 768;
  bool use_linear_projection = false;
  bool upcast_attention = false;
};

struct unet_down_block_impl : torch::nn::Module {
  /// `layers` resnets from in_channels to out_channels; a downsampler when `add_downsample`.
  unet_down_block_impl(const unet_level_options& level, int64_t in_channels, int64_t out_channels,
                       int64_t layers, bool add_downsample, int64_t downsample_padding);

  /// Returns the block's output; appends every intermediate kept for the up path to `skips`.
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& time_embedding,
                        const torch::Tensor& context, std::vector<torch::Tensor>& skips);

  torch::nn::ModuleList attentions;  // registered for cross-attention levels only
  torch::nn::ModuleList resnets;
  torch::nn::ModuleList downsamplers;  // registered where add_downsample
};
TORCH_MODULE_IMPL(unet_down_block, unet_down_block_impl);

struct unet_mid_block_impl : torch::nn::Module {
  /// UNetMidBlock2DCrossAttn with one transformer_2d; resnet outputs divided by
  /// output_scale_factor (the config's mid_block_scale_factor).
  unet_mid_block_impl(const unet_level_options& level, int64_t channels,
                      double output_scale_factor);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& time_embedding,
                        const torch::Tensor& context);

  torch::nn::ModuleList attentions;
  torch::nn::ModuleList resnets;
};
TORCH_MODULE_IMPL(unet_mid_block, unet_mid_block_impl);

struct unet_up_block_impl : torch::nn::Module {
  /// `layers` resnets (the config's layers_per_block + 1). The first takes the previous level's
  /// output (prev_output_channels) and each takes a skip connection: out_channels wide, except
  /// the last, which takes the first skip of the matching down level (in_channels wide).
  unet_up_block_impl(const unet_level_options& level, int64_t in_channels, int64_t out_channels,
                     int64_t prev_output_channels, int64_t layers, bool add_upsample);

  /// Consumes `layers` skip connections from the back of `skips`. upsample_size: {H, W} to
  /// upsample to (the next level's skip size); empty: twice the size.
  torch::Tensor forward(const torch::Tensor& x, std::vector<torch::Tensor>& skips,
                        const torch::Tensor& time_embedding, const torch::Tensor& context,
                        const std::vector<int64_t>& upsample_size);

  torch::nn::ModuleList attentions;  // registered for cross-attention levels only
  torch::nn::ModuleList resnets;
  torch::nn::ModuleList upsamplers;  // registered where add_upsample
};
TORCH_MODULE_IMPL(unet_up_block, unet_up_block_impl);

} // namespace ddactor
