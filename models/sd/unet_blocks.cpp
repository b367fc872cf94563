// The SD UNet's down, mid and up levels; see unet_blocks.hpp.
#include "models/sd/unet_blocks.hpp"

#include "models/sd/resampling_2d.hpp"
#include "models/sd/resnet_block_2d.hpp"
#include "models/sd/transformer_2d.hpp"

namespace ddactor {

namespace {

resnet_block_2d make_resnet(const unet_level_options& level, int64_t in, int64_t out,
                            double output_scale_factor = 1.0) {
  resnet_block_2d_options o;
  o.in_channels = in;
  o.out_channels = out;
  o.time_embedding_channels = level.time_embedding_channels;
  o.groups = level.norm_groups;
  o.eps = level.norm_eps;
  o.activation = level.activation;
  o.dropout = level.dropout;
  o.output_scale_factor = output_scale_factor;
  return resnet_block_2d(o);
}

// diffusers passes `attention_head_dim` from the UNet config as the number of heads; the width
// of a head follows from the level's channels.
transformer_2d make_transformer(const unet_level_options& level, int64_t channels) {
  transformer_2d_options o;
  o.channels = channels;
  o.heads = level.attention_heads;
  o.head_dim = channels / level.attention_heads;
  o.layers = level.transformer_layers;
  o.cross_attention_dim = level.cross_attention_dim;
  o.norm_groups = level.norm_groups;
  o.use_linear_projection = level.use_linear_projection;
  o.upcast_attention = level.upcast_attention;
  return transformer_2d(o);
}

} // namespace

// Registration order follows diffusers' attribute order (attentions before resnets), so that
// the state_dict lists its keys in the same order.
unet_down_block_impl::unet_down_block_impl(const unet_level_options& level, int64_t in_channels,
                                           int64_t out_channels, int64_t layers,
                                           bool add_downsample, int64_t downsample_padding) {
  if (level.cross_attention) {
    attentions = register_module("attentions", torch::nn::ModuleList());
    for (int64_t i = 0; i < layers; ++i)
      attentions->push_back(make_transformer(level, out_channels));
  }
  resnets = register_module("resnets", torch::nn::ModuleList());
  for (int64_t i = 0; i < layers; ++i)
    resnets->push_back(make_resnet(level, i == 0 ? in_channels : out_channels, out_channels));
  if (add_downsample)
    downsamplers = register_module(
      "downsamplers",
      torch::nn::ModuleList(downsample_2d(out_channels, out_channels, downsample_padding)));
}

torch::Tensor unet_down_block_impl::forward(const torch::Tensor& x,
                                            const torch::Tensor& time_embedding,
                                            const torch::Tensor& context,
                                            std::vector<torch::Tensor>& skips) {
  auto h = x;
  for (size_t i = 0; i < resnets->size(); ++i) {
    h = resnets->at<resnet_block_2d_impl>(i).forward(h, time_embedding);
    if (!attentions->is_empty())
      h = attentions->at<transformer_2d_impl>(i).forward(h, context);
    skips.push_back(h);
  }
  if (!downsamplers->is_empty()) {
    h = downsamplers->at<downsample_2d_impl>(0).forward(h);
    skips.push_back(h);
  }
  return h;
}

unet_mid_block_impl::unet_mid_block_impl(const unet_level_options& level, int64_t channels,
                                         double output_scale_factor) {
  attentions =
    register_module("attentions", torch::nn::ModuleList(make_transformer(level, channels)));
  resnets = register_module(
    "resnets", torch::nn::ModuleList(make_resnet(level, channels, channels, output_scale_factor),
                                     make_resnet(level, channels, channels, output_scale_factor)));
}

torch::Tensor unet_mid_block_impl::forward(const torch::Tensor& x,
                                           const torch::Tensor& time_embedding,
                                           const torch::Tensor& context) {
  auto h = resnets->at<resnet_block_2d_impl>(0).forward(x, time_embedding);
  h = attentions->at<transformer_2d_impl>(0).forward(h, context);
  return resnets->at<resnet_block_2d_impl>(1).forward(h, time_embedding);
}

unet_up_block_impl::unet_up_block_impl(const unet_level_options& level, int64_t in_channels,
                                       int64_t out_channels, int64_t prev_output_channels,
                                       int64_t layers, bool add_upsample) {
  if (level.cross_attention) {
    attentions = register_module("attentions", torch::nn::ModuleList());
    for (int64_t i = 0; i < layers; ++i)
      attentions->push_back(make_transformer(level, out_channels));
  }
  resnets = register_module("resnets", torch::nn::ModuleList());
  for (int64_t i = 0; i < layers; ++i) {
    const auto from_below = i == 0 ? prev_output_channels : out_channels;
    const auto from_skip = i == layers - 1 ? in_channels : out_channels;
    resnets->push_back(make_resnet(level, from_below + from_skip, out_channels));
  }
  if (add_upsample)
    upsamplers = register_module(
      "upsamplers", torch::nn::ModuleList(upsample_2d(out_channels, out_channels)));
}

torch::Tensor unet_up_block_impl::forward(const torch::Tensor& x, std::vector<torch::Tensor>& skips,
                                          const torch::Tensor& time_embedding,
                                          const torch::Tensor& context,
                                          const std::vector<int64_t>& upsample_size) {
  auto h = x;
  for (size_t i = 0; i < resnets->size(); ++i) {
    h = torch::cat({h, skips.back()}, 1);
    skips.pop_back();
    h = resnets->at<resnet_block_2d_impl>(i).forward(h, time_embedding);
    if (!attentions->is_empty())
      h = attentions->at<transformer_2d_impl>(i).forward(h, context);
  }
  if (!upsamplers->is_empty())
    h = upsamplers->at<upsample_2d_impl>(0).forward(h, upsample_size);
  return h;
}

} // namespace ddactor
