#pragma once
// diffusers' ResnetBlock2D, the convolutional unit of the SD UNet and VAE:
//
//   x -> GroupNorm -> act -> conv3x3 (+ Linear(act(time embedding)) per channel)
//     -> GroupNorm -> act -> dropout -> conv3x3 -> + shortcut(x) -> / output_scale_factor
//
// The shortcut is a 1x1 convolution where the channel count changes, the identity otherwise.
// Only diffusers' "default" time-embedding conditioning (added after conv1) is implemented; the
// UNet config refuses the others.

#include <torch/torch.h>

#include "models/sd/activation_function.hpp"

namespace ddactor {

struct resnet_block_2d_options {
  int64_t in_channels = 0;
  int64_t out_channels = 0;
  /// Width of the time embedding; 0: none (the VAE's blocks), so no time_emb_proj.
  int64_t time_embedding_channels = 0;
  int64_t groups = 32;
  double eps = 1e-6;
  activation_function activation = activation_function::silu;
  double dropout = 0.0;
  double output_scale_factor = 1.0;
};

struct resnet_block_2d_impl : torch::nn::Module {
  explicit resnet_block_2d_impl(const resnet_block_2d_options& options);

  /// x (N, in, H, W), time_embedding (N, time_embedding_channels) or undefined -> (N, out, H, W).
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& time_embedding = {});

  /// Recompute this block in backward instead of keeping its activations (see
  /// activation_checkpoint.hpp); set by apply_memory_saving().
  bool checkpoint_activations = false;

  torch::nn::GroupNorm norm1{nullptr};
  torch::nn::Conv2d conv1{nullptr};
  torch::nn::Linear time_emb_proj{nullptr};
  torch::nn::GroupNorm norm2{nullptr};
  torch::nn::Dropout dropout{nullptr};
  torch::nn::Conv2d conv2{nullptr};
  torch::nn::Conv2d conv_shortcut{nullptr};

private:
  torch::Tensor compute(const torch::Tensor& x, const torch::Tensor& time_embedding);

  resnet_block_2d_options options_;
};
TORCH_MODULE_IMPL(resnet_block_2d, resnet_block_2d_impl);

} // namespace ddactor
