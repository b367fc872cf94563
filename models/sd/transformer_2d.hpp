#pragma once
// diffusers' Transformer2DModel as the SD UNet uses it ("continuous input"): a feature map is
// normalised, projected, attended over as H*W tokens by BasicTransformerBlocks, projected back and
// added to itself.
//
//   x (N,C,H,W) -> GroupNorm(eps 1e-6) -> proj_in -> tokens (N, H*W, inner)
//     -> [norm1 -> attn1 (self) -> +] -> [norm2 -> attn2 (to the text) -> +]
//     -> [norm3 -> ff (GEGLU) -> +]  (x transformer layers)
//     -> proj_out -> (N,C,H,W) + x
//
// proj_in/proj_out are 1x1 convolutions in SD 1.x and Linear layers in SD 2.x
// (`use_linear_projection`); either way their state_dict names are proj_in.* and proj_out.*.
// Every Linear layer here is an adaptable_linear, so LoRA can target it.

#include <torch/torch.h>

#include "models/sd/cross_attention.hpp"

namespace ddactor {

/// GEGLU: one Linear to twice the width, the first half gated by GELU of the second
/// (Shazeer 2020). diffusers names the Linear `proj`.
struct geglu_impl : torch::nn::Module {
  geglu_impl(int64_t dim_in, int64_t dim_out);
  torch::Tensor forward(const torch::Tensor& x);

  adaptable_linear proj{nullptr};
};
TORCH_MODULE_IMPL(geglu, geglu_impl);

/// diffusers' FeedForward with GEGLU: net.0 (GEGLU to 4x width), net.1 dropout, net.2 Linear back.
struct geglu_feed_forward_impl : torch::nn::Module {
  geglu_feed_forward_impl(int64_t dim, double dropout);
  torch::Tensor forward(const torch::Tensor& x);

  torch::nn::ModuleList net;
  geglu gated_projection{nullptr};
  torch::nn::Dropout dropout{nullptr};
  adaptable_linear projection_out{nullptr};
};
TORCH_MODULE_IMPL(geglu_feed_forward, geglu_feed_forward_impl);

struct transformer_2d_options {
  int64_t channels = 0;  // in and out; also heads * head_dim
  int64_t heads = 8;
  int64_t head_dim = 40;
  int64_t layers = 1;
  int64_t cross_attention_dim = 768;
  int64_t norm_groups = 32;
  bool use_linear_projection = false;
  bool upcast_attention = false;
  double dropout = 0.0;
};

/// diffusers' BasicTransformerBlock with LayerNorms (eps 1e-5), self- and cross-attention.
struct basic_transformer_block_impl : torch::nn::Module {
  explicit basic_transformer_block_impl(const transformer_2d_options& options);

  /// tokens (N, L, C), context (N, Lk, cross_attention_dim) -> (N, L, C).
  torch::Tensor forward(const torch::Tensor& tokens, const torch::Tensor& context);

  /// Recompute this block in backward; set by apply_memory_saving().
  bool checkpoint_activations = false;

  torch::nn::LayerNorm norm1{nullptr};
  cross_attention attn1{nullptr};
  torch::nn::LayerNorm norm2{nullptr};
  cross_attention attn2{nullptr};
  torch::nn::LayerNorm norm3{nullptr};
  geglu_feed_forward ff{nullptr};

private:
  torch::Tensor compute(const torch::Tensor& tokens, const torch::Tensor& context);
};
TORCH_MODULE_IMPL(basic_transformer_block, basic_transformer_block_impl);

struct transformer_2d_impl : torch::nn::Module {
  explicit transformer_2d_impl(const transformer_2d_options& options);

  /// x (N, C, H, W), context (N, Lk, cross_attention_dim) -> (N, C, H, W).
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& context);

  torch::nn::GroupNorm norm{nullptr};
  torch::nn::Conv2d proj_in_conv{nullptr};    // registered as proj_in unless linear
  adaptable_linear proj_in_linear{nullptr};  // registered as proj_in if linear
  torch::nn::ModuleList transformer_blocks;
  torch::nn::Conv2d proj_out_conv{nullptr};
  adaptable_linear proj_out_linear{nullptr};

private:
  transformer_2d_options options_;
};
TORCH_MODULE_IMPL(transformer_2d, transformer_2d_impl);

} // namespace ddactor
