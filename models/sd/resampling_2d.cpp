// Strided-convolution downsampling and nearest + convolution upsampling; see resampling_2d.hpp.
#include "models/sd/resampling_2d.hpp"

namespace ddactor {

namespace fn = torch::nn::functional;

downsample_2d_impl::downsample_2d_impl(int64_t channels, int64_t out_channels, int64_t padding)
  : padding_(padding) {
  conv = register_module(
    "conv", torch::nn::Conv2d(torch::nn::Conv2dOptions(channels, out_channels, 3)
                                .stride(2)
                                .padding(padding)));
}

torch::Tensor downsample_2d_impl::forward(const torch::Tensor& x) {
  if (padding_ == 0)
    return conv(fn::pad(x, fn::PadFuncOptions({0, 1, 0, 1})));
  return conv(x);
}

upsample_2d_impl::upsample_2d_impl(int64_t channels, int64_t out_channels) {
  conv = register_module(
    "conv", torch::nn::Conv2d(torch::nn::Conv2dOptions(channels, out_channels, 3).padding(1)));
}

torch::Tensor upsample_2d_impl::forward(const torch::Tensor& x,
                                        const std::vector<int64_t>& output_size) {
  // LibTorch 1.13's nearest upsampling has no bfloat16 kernel.
  const auto dtype = x.scalar_type();
  auto h = dtype == torch::kBFloat16 ? x.to(torch::kFloat32) : x;
  auto options = fn::InterpolateFuncOptions().mode(torch::kNearest);
  if (output_size.empty())
    options.scale_factor(std::vector<double>{2.0, 2.0});
  else
    options.size(output_size);
  h = fn::interpolate(h, options).to(dtype);
  return conv(h);
}

} // namespace ddactor
