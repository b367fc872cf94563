// diffusers' Attention with query-chunked computation; see cross_attention.hpp.
#include "models/sd/cross_attention.hpp"

#include <cmath>

#include "models/sd/activation_checkpoint.hpp"

namespace ddactor {

namespace {

torch::Tensor attend_all_queries(const torch::Tensor& q, const torch::Tensor& k,
                                 const torch::Tensor& v, const attention_computation& how) {
  const auto dtype = v.scalar_type();
  auto query = how.upcast_attention ? q.to(torch::kFloat32) : q;
  auto key = how.upcast_attention ? k.to(torch::kFloat32) : k;
  auto scores = torch::matmul(query, key.transpose(-1, -2)).mul_(how.scale);
  if (how.upcast_softmax)
    scores = scores.to(torch::kFloat32);
  auto probabilities = scores.softmax(-1).to(dtype);
  return torch::matmul(probabilities, v);
}

// (N, L, H * D) -> (N, H, L, D)
torch::Tensor split_heads(const torch::Tensor& x, int64_t heads) {
  const auto n = x.size(0), length = x.size(1);
  return x.view({n, length, heads, x.size(2) / heads}).permute({0, 2, 1, 3});
}

// (N, H, L, D) -> (N, L, H * D)
torch::Tensor merge_heads(const torch::Tensor& x) {
  const auto n = x.size(0), heads = x.size(1), length = x.size(2), dim = x.size(3);
  return x.permute({0, 2, 1, 3}).reshape({n, length, heads * dim});
}

} // namespace

torch::Tensor scaled_dot_product_attention(const torch::Tensor& q, const torch::Tensor& k,
                                           const torch::Tensor& v,
                                           const attention_computation& how) {
  const auto queries = q.size(2);
  if (how.query_chunk_size <= 0 || how.query_chunk_size >= queries)
    return attend_all_queries(q, k, v, how);
  auto attend_chunk = [how](const std::vector<torch::Tensor>& in) {
    return attend_all_queries(in[0], in[1], in[2], how);
  };
  std::vector<torch::Tensor> chunks;
  for (int64_t begin = 0; begin < queries; begin += how.query_chunk_size) {
    auto q_chunk = q.narrow(2, begin, std::min(how.query_chunk_size, queries - begin));
    // Each chunk keeps only its inputs (views of q, k, v) for backward, not its scores.
    chunks.push_back(run_checkpointed(attend_chunk, {q_chunk, k, v}, {}));
  }
  return torch::cat(chunks, 2);
}

cross_attention_impl::cross_attention_impl(const cross_attention_options& options)
  : options_(options) {
  const auto inner_dim = options.heads * options.head_dim;
  const auto context_dim = options.context_dim > 0 ? options.context_dim : options.query_dim;
  if (options.group_norm_groups > 0)
    group_norm = register_module(
      "group_norm", torch::nn::GroupNorm(torch::nn::GroupNormOptions(options.group_norm_groups,
                                                                     options.query_dim)
                                           .eps(options.group_norm_eps)));
  auto linear = [](int64_t in, int64_t out, bool bias) {
    return adaptable_linear(torch::nn::LinearOptions(in, out).bias(bias));
  };
  to_q = register_module("to_q", linear(options.query_dim, inner_dim, options.qkv_bias));
  to_k = register_module("to_k", linear(context_dim, inner_dim, options.qkv_bias));
  to_v = register_module("to_v", linear(context_dim, inner_dim, options.qkv_bias));
  out_projection = linear(inner_dim, options.query_dim, true);
  out_dropout = torch::nn::Dropout(options.dropout);
  to_out = register_module("to_out", torch::nn::ModuleList(out_projection, out_dropout));
}

torch::Tensor cross_attention_impl::forward(const torch::Tensor& hidden,
                                            const torch::Tensor& context) {
  const bool feature_map = hidden.dim() == 4;
  // (N, C, H, W) -> (N, H*W, C) tokens
  auto tokens = feature_map ? hidden.flatten(2).transpose(1, 2) : hidden;
  if (group_norm)  // GroupNorm wants channels second
    tokens = group_norm(tokens.transpose(1, 2)).transpose(1, 2);

  const auto& source = context.defined() ? context : tokens;
  auto q = split_heads(to_q(tokens), options_.heads);
  auto k = split_heads(to_k(source), options_.heads);
  auto v = split_heads(to_v(source), options_.heads);
  attention_computation how;
  how.scale = 1.0 / std::sqrt(static_cast<double>(options_.head_dim));
  how.upcast_attention = options_.upcast_attention;
  how.upcast_softmax = options_.upcast_softmax;
  how.query_chunk_size = query_chunk_size;
  auto out = out_dropout(out_projection(merge_heads(scaled_dot_product_attention(q, k, v, how))));

  if (feature_map)
    out = out.transpose(1, 2).reshape(hidden.sizes());
  if (options_.residual_connection)
    out = out + hidden;
  if (options_.rescale_output_factor != 1.0)
    out = out / options_.rescale_output_factor;
  return out;
}

} // namespace ddactor
