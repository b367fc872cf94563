// diffusers' ResnetBlock2D; see resnet_block_2d.hpp.
#include "models/sd/resnet_block_2d.hpp"

#include "models/sd/activation_checkpoint.hpp"

namespace ddactor {

namespace {

torch::nn::Conv2d conv(int64_t in, int64_t out, int64_t kernel) {
  return torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, kernel).padding(kernel / 2));
}

torch::nn::GroupNorm group_norm(int64_t groups, int64_t channels, double eps) {
  return torch::nn::GroupNorm(torch::nn::GroupNormOptions(groups, channels).eps(eps));
}

} // namespace

// Registration order is diffusers' attribute order, so that the state_dict lists the same keys
// in the same order.
resnet_block_2d_impl::resnet_block_2d_impl(const resnet_block_2d_options& options)
  : options_(options) {
  norm1 = register_module("norm1", group_norm(options.groups, options.in_channels, options.eps));
  conv1 = register_module("conv1", conv(options.in_channels, options.out_channels, 3));
  if (options.time_embedding_channels > 0)
    time_emb_proj = register_module(
      "time_emb_proj", torch::nn::Linear(options.time_embedding_channels, options.out_channels));
  norm2 = register_module("norm2", group_norm(options.groups, options.out_channels, options.eps));
  dropout = register_module("dropout", torch::nn::Dropout(options.dropout));
  conv2 = register_module("conv2", conv(options.out_channels, options.out_channels, 3));
  if (options.in_channels != options.out_channels)
    conv_shortcut =
      register_module("conv_shortcut", conv(options.in_channels, options.out_channels, 1));
}

torch::Tensor resnet_block_2d_impl::forward(const torch::Tensor& x,
                                            const torch::Tensor& time_embedding) {
  if (!checkpoint_activations)
    return compute(x, time_embedding);
  return run_checkpointed(
    [this](const std::vector<torch::Tensor>& in) { return compute(in[0], in[1]); },
    {x, time_embedding}, parameters());
}

torch::Tensor resnet_block_2d_impl::compute(const torch::Tensor& x,
                                            const torch::Tensor& time_embedding) {
  const auto act = options_.activation;
  auto h = conv1(apply_activation(act, norm1(x)));
  if (time_emb_proj && time_embedding.defined())
    h = h + time_emb_proj(apply_activation(act, time_embedding)).unsqueeze(-1).unsqueeze(-1);
  h = conv2(dropout(apply_activation(act, norm2(h))));
  auto out = (conv_shortcut ? conv_shortcut(x) : x) + h;
  if (options_.output_scale_factor != 1.0)
    out = out / options_.output_scale_factor;
  return out;
}

} // namespace ddactor
