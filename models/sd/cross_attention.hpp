#pragma once
// diffusers' `Attention` (named CrossAttention before diffusers 0.14): multi-head attention
// whose keys and values come from the queries' own sequence (self-attention, `attn1` of a
// transformer block, the VAE's mid-block attention) or from another one (cross-attention to the
// text encoder's states, `attn2`). Parameter names are diffusers' own: to_q, to_k, to_v,
// to_out.0, and group_norm where the attention normalises its input itself (the VAE).
//
// Attention over L queries and keys materialises an L x L score matrix per head: 4096 x 4096 at a
// 64 x 64 latent (512 px). LibTorch 1.13 has no fused scaled_dot_product_attention, so the
// memory-bounded path here splits the queries into chunks (the softmax runs over keys, so chunks
// of queries are independent and the result is the same) and, when gradients are needed,
// recomputes each chunk in backward (activation_checkpoint.hpp) so that training holds one
// chunk's scores at a time as well.

#include <torch/torch.h>

#include "models/sd/adaptable_linear.hpp"

namespace ddactor {

/// How softmax(scale * q k^T) v is computed.
struct attention_computation {
  double scale = 1.0;
  /// q k^T in float32 whatever the input dtype (SD 2.x's `upcast_attention`).
  bool upcast_attention = false;
  /// The softmax in float32 (diffusers' `upcast_softmax`, set for the VAE's attention).
  bool upcast_softmax = false;
  /// Queries per chunk; 0 or at least the query count: all at once.
  int64_t query_chunk_size = 0;
};

/// softmax(scale * q k^T) v over the last two dimensions: q (N, H, Lq, D), k and v (N, H, Lk, D)
/// -> (N, H, Lq, D), in v's dtype.
torch::Tensor scaled_dot_product_attention(const torch::Tensor& q, const torch::Tensor& k,
                                           const torch::Tensor& v,
                                           const attention_computation& how);

struct cross_attention_options {
  int64_t query_dim = 0;
  /// Width of the key/value source; 0: self-attention (the queries' own width).
  int64_t context_dim = 0;
  int64_t heads = 8;
  int64_t head_dim = 64;
  /// Biases on to_q, to_k, to_v (to_out.0 always has one).
  bool qkv_bias = false;
  bool upcast_attention = false;
  bool upcast_softmax = false;
  double dropout = 0.0;
  /// The VAE's form: a GroupNorm on the input (0 groups: none), the input added back to the
  /// output, and the sum divided by rescale_output_factor.
  int64_t group_norm_groups = 0;
  double group_norm_eps = 1e-5;
  bool residual_connection = false;
  double rescale_output_factor = 1.0;
};

struct cross_attention_impl : torch::nn::Module {
  explicit cross_attention_impl(const cross_attention_options& options);

  /// hidden: (N, L, query_dim) tokens or (N, query_dim, H, W) feature maps (attended as H*W
  /// tokens, returned in the same shape). context: (N, Lk, context_dim), or undefined for
  /// self-attention.
  torch::Tensor forward(const torch::Tensor& hidden, const torch::Tensor& context = {});

  const cross_attention_options& options() const { return options_; }

  /// Queries per chunk (see attention_computation); set by apply_memory_saving().
  int64_t query_chunk_size = 0;

  torch::nn::GroupNorm group_norm{nullptr};
  // Adaptable (adaptable_linear.hpp): LoRA fine-tuning attaches adapters to these.
  adaptable_linear to_q{nullptr};
  adaptable_linear to_k{nullptr};
  adaptable_linear to_v{nullptr};
  torch::nn::ModuleList to_out;  // [0] the output projection, [1] dropout
  adaptable_linear out_projection{nullptr};
  torch::nn::Dropout out_dropout{nullptr};

private:
  cross_attention_options options_;
};
TORCH_MODULE_IMPL(cross_attention, cross_attention_impl);

} // namespace ddactor
