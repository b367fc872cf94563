// Transformer2DModel, BasicTransformerBlock and the GEGLU feed-forward; see transformer_2d.hpp.
#include "models/sd/transformer_2d.hpp"

#include "models/sd/activation_checkpoint.hpp"

namespace ddactor {

namespace {

// diffusers' FeedForward default: the hidden width is 4x the model width.
constexpr int64_t feed_forward_multiplier = 4;
// BasicTransformerBlock's LayerNorm eps and Transformer2DModel's GroupNorm eps (diffusers
// defaults, not taken from the UNet config).
constexpr double transformer_layer_norm_eps = 1e-5;
constexpr double transformer_group_norm_eps = 1e-6;

torch::nn::LayerNorm layer_norm(int64_t dim) {
  return torch::nn::LayerNorm(
    torch::nn::LayerNormOptions({dim}).eps(transformer_layer_norm_eps));
}

torch::nn::Conv2d pointwise_conv(int64_t in, int64_t out) {
  return torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, 1));
}

} // namespace

geglu_impl::geglu_impl(int64_t dim_in, int64_t dim_out)
  : proj(register_module("proj", adaptable_linear(dim_in, 2 * dim_out))) {}

torch::Tensor geglu_impl::forward(const torch::Tensor& x) {
  auto halves = proj(x).chunk(2, -1);
  return halves[0] * torch::gelu(halves[1]);
}

geglu_feed_forward_impl::geglu_feed_forward_impl(int64_t dim, double dropout_probability)
  : gated_projection(dim, dim * feed_forward_multiplier),
    dropout(dropout_probability),
    projection_out(dim * feed_forward_multiplier, dim) {
  net = register_module("net", torch::nn::ModuleList(gated_projection, dropout, projection_out));
}

torch::Tensor geglu_feed_forward_impl::forward(const torch::Tensor& x) {
  return projection_out(dropout(gated_projection(x)));
}

basic_transformer_block_impl::basic_transformer_block_impl(const transformer_2d_options& o) {
  cross_attention_options self_attention;
  self_attention.query_dim = o.channels;
  self_attention.heads = o.heads;
  self_attention.head_dim = o.head_dim;
  self_attention.upcast_attention = o.upcast_attention;
  self_attention.dropout = o.dropout;
  auto to_text = self_attention;
  to_text.context_dim = o.cross_attention_dim;

  norm1 = register_module("norm1", layer_norm(o.channels));
  attn1 = register_module("attn1", cross_attention(self_attention));
  norm2 = register_module("norm2", layer_norm(o.channels));
  attn2 = register_module("attn2", cross_attention(to_text));
  norm3 = register_module("norm3", layer_norm(o.channels));
  ff = register_module("ff", geglu_feed_forward(o.channels, o.dropout));
}

torch::Tensor basic_transformer_block_impl::forward(const torch::Tensor& tokens,
                                                    const torch::Tensor& context) {
  if (!checkpoint_activations)
    return compute(tokens, context);
  return run_checkpointed(
    [this](const std::vector<torch::Tensor>& in) { return compute(in[0], in[1]); },
    {tokens, context}, parameters());
}

torch::Tensor basic_transformer_block_impl::compute(const torch::Tensor& tokens,
                                                    const torch::Tensor& context) {
  auto h = attn1(norm1(tokens)) + tokens;
  h = attn2(norm2(h), context) + h;
  return ff(norm3(h)) + h;
}

transformer_2d_impl::transformer_2d_impl(const transformer_2d_options& options)
  : options_(options) {
  const auto inner = options.heads * options.head_dim;
  norm = register_module(
    "norm", torch::nn::GroupNorm(torch::nn::GroupNormOptions(options.norm_groups, options.channels)
                                   .eps(transformer_group_norm_eps)));
  if (options.use_linear_projection)
    proj_in_linear = register_module("proj_in", adaptable_linear(options.channels, inner));
  else
    proj_in_conv = register_module("proj_in", pointwise_conv(options.channels, inner));
  transformer_blocks = register_module("transformer_blocks", torch::nn::ModuleList());
  for (int64_t i = 0; i < options.layers; ++i)
    transformer_blocks->push_back(basic_transformer_block(options));
  if (options.use_linear_projection)
    proj_out_linear = register_module("proj_out", adaptable_linear(inner, options.channels));
  else
    proj_out_conv = register_module("proj_out", pointwise_conv(inner, options.channels));
}

torch::Tensor transformer_2d_impl::forward(const torch::Tensor& x, const torch::Tensor& context) {
  const auto n = x.size(0), height = x.size(2), width = x.size(3);
  // (N, C, H, W) <-> (N, H*W, C): the linear projections act on tokens, the convolutions on maps.
  auto to_tokens = [&](const torch::Tensor& map) {
    return map.permute({0, 2, 3, 1}).reshape({n, height * width, map.size(1)});
  };
  auto to_map = [&](const torch::Tensor& tokens) {
    return tokens.reshape({n, height, width, tokens.size(2)}).permute({0, 3, 1, 2}).contiguous();
  };

  auto h = norm(x);
  h = options_.use_linear_projection ? proj_in_linear(to_tokens(h)) : to_tokens(proj_in_conv(h));
  for (const auto& block : *transformer_blocks)
    h = block->as<basic_transformer_block_impl>()->forward(h, context);
  h = options_.use_linear_projection ? to_map(proj_out_linear(h)) : proj_out_conv(to_map(h));
  return h + x;
}

} // namespace ddactor
