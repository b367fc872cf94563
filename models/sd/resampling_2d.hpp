#pragma once
// diffusers' Downsample2D and Upsample2D with a convolution, as the SD UNet and VAE use them:
// a 3x3 convolution of stride 2 halves the resolution; nearest-neighbour interpolation followed by
// a 3x3 convolution doubles it. The convolution is named `conv` in both (state_dict
// `downsamplers.0.conv.weight`, `upsamplers.0.conv.weight`).

#include <torch/torch.h>

#include <vector>

namespace ddactor {

struct downsample_2d_impl : torch::nn::Module {
  /// padding 1 (the UNet's downsample_padding): symmetric. padding 0 (the VAE encoder): one row
  /// and one column of zeros on the bottom and the right only, as the original LDM code did.
  downsample_2d_impl(int64_t channels, int64_t out_channels, int64_t padding);
  torch::Tensor forward(const torch::Tensor& x);

  torch::nn::Conv2d conv{nullptr};

private:
  int64_t padding_;
};
TORCH_MODULE_IMPL(downsample_2d, downsample_2d_impl);

struct upsample_2d_impl : torch::nn::Module {
  upsample_2d_impl(int64_t channels, int64_t out_channels);
  /// output_size {H, W}: the size to interpolate to (the UNet passes its skip connection's size,
  /// for inputs not divisible by 2^levels); empty: twice the input's.
  torch::Tensor forward(const torch::Tensor& x, const std::vector<int64_t>& output_size = {});

  torch::nn::Conv2d conv{nullptr};
};
TORCH_MODULE_IMPL(upsample_2d, upsample_2d_impl);

} // namespace ddactor
