// The SD VAE's down, up and mid levels; see vae_blocks.hpp.
#include "models/sd/vae_blocks.hpp"

#include "models/sd/cross_attention.hpp"
#include "models/sd/resampling_2d.hpp"
#include "models/sd/resnet_block_2d.hpp"

namespace ddactor {

namespace {

// diffusers builds the VAE's resnets and attention with eps 1e-6, not from the config.
constexpr double vae_norm_eps = 1e-6;

resnet_block_2d make_resnet(const vae_level_options& level, int64_t in, int64_t out) {
  resnet_block_2d_options o;
  o.in_channels = in;
  o.out_channels = out;
  o.groups = level.norm_groups;
  o.eps = vae_norm_eps;
  o.activation = level.activation;
  return resnet_block_2d(o);
}

torch::Tensor run_resnets(torch::nn::ModuleList& resnets, torch::Tensor x) {
  for (size_t i = 0; i < resnets->size(); ++i)
    x = resnets->at<resnet_block_2d_impl>(i).forward(x);
  return x;
}

} // namespace

vae_down_block_impl::vae_down_block_impl(const vae_level_options& level, int64_t in_channels,
                                         int64_t out_channels, int64_t layers,
                                         bool add_downsample) {
  resnets = register_module("resnets", torch::nn::ModuleList());
  for (int64_t i = 0; i < layers; ++i)
    resnets->push_back(make_resnet(level, i == 0 ? in_channels : out_channels, out_channels));
  if (add_downsample)
    downsamplers = register_module(
      "downsamplers", torch::nn::ModuleList(downsample_2d(out_channels, out_channels, 0)));
}

torch::Tensor vae_down_block_impl::forward(const torch::Tensor& x) {
  auto h = run_resnets(resnets, x);
  return downsamplers->is_empty() ? h : downsamplers->at<downsample_2d_impl>(0).forward(h);
}

vae_up_block_impl::vae_up_block_impl(const vae_level_options& level, int64_t in_channels,
                                     int64_t out_channels, int64_t layers, bool add_upsample) {
  resnets = register_module("resnets", torch::nn::ModuleList());
  for (int64_t i = 0; i < layers; ++i)
    resnets->push_back(make_resnet(level, i == 0 ? in_channels : out_channels, out_channels));
  if (add_upsample)
    upsamplers = register_module(
      "upsamplers", torch::nn::ModuleList(upsample_2d(out_channels, out_channels)));
}

torch::Tensor vae_up_block_impl::forward(const torch::Tensor& x) {
  auto h = run_resnets(resnets, x);
  return upsamplers->is_empty() ? h : upsamplers->at<upsample_2d_impl>(0).forward(h);
}

// diffusers' UNetMidBlock2D as the VAE configures it: attention_head_dim = channels, so one
// head; q/k/v with biases; the softmax upcast to float32.
vae_mid_block_impl::vae_mid_block_impl(const vae_level_options& level, int64_t channels) {
  cross_attention_options attention;
  attention.query_dim = channels;
  attention.heads = 1;
  attention.head_dim = channels;
  attention.qkv_bias = true;
  attention.upcast_softmax = true;
  attention.group_norm_groups = level.norm_groups;
  attention.group_norm_eps = vae_norm_eps;
  attention.residual_connection = true;
  attentions = register_module("attentions", torch::nn::ModuleList(cross_attention(attention)));
  resnets = register_module(
    "resnets", torch::nn::ModuleList(make_resnet(level, channels, channels),
                                     make_resnet(level, channels, channels)));
}

torch::Tensor vae_mid_block_impl::forward(const torch::Tensor& x) {
  auto h = resnets->at<resnet_block_2d_impl>(0).forward(x);
  h = attentions->at<cross_attention_impl>(0).forward(h);
  return resnets->at<resnet_block_2d_impl>(1).forward(h);
}

} // namespace ddactor
