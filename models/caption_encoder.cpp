// Byte-level caption encoder; see caption_encoder.hpp.
#include "models/caption_encoder.hpp"

#include <cmath>

namespace ddactor {

torch::Tensor tokenize_captions(const std::vector<std::string>& captions, int64_t max_bytes) {
  auto tokens = torch::full({static_cast<int64_t>(captions.size()), max_bytes},
                            caption_padding_token, torch::kInt64);
  auto acc = tokens.accessor<int64_t, 2>();
  for (size_t i = 0; i < captions.size(); ++i) {
    const auto& text = captions[i];
    auto n = std::min<int64_t>(max_bytes, static_cast<int64_t>(text.size()));
    for (int64_t j = 0; j < n; ++j)
      acc[static_cast<int64_t>(i)][j] = static_cast<unsigned char>(text[static_cast<size_t>(j)]);
  }
  return tokens;
}

text_layer_impl::text_layer_impl(int64_t width, int64_t num_heads)
  : num_heads(num_heads),
    norm1(register_module("norm1", torch::nn::LayerNorm(torch::nn::LayerNormOptions({width})))),
    qkv(register_module("qkv", torch::nn::Linear(width, 3 * width))),
    proj(register_module("proj", torch::nn::Linear(width, width))),
    norm2(register_module("norm2", torch::nn::LayerNorm(torch::nn::LayerNormOptions({width})))),
    fc1(register_module("fc1", torch::nn::Linear(width, 4 * width))),
    fc2(register_module("fc2", torch::nn::Linear(4 * width, width))) {}

torch::Tensor text_layer_impl::forward(const torch::Tensor& x, const torch::Tensor& padding_mask) {
  auto n = x.size(0), l = x.size(1), d = x.size(2);
  auto head_dim = d / num_heads;
  auto qkv_out = qkv(norm1(x)).reshape({n, l, 3, num_heads, head_dim}).permute({2, 0, 3, 1, 4});
  auto q = qkv_out[0], k = qkv_out[1], v = qkv_out[2];
  auto scores = torch::matmul(q, k.transpose(-2, -1)) / std::sqrt(static_cast<double>(head_dim));
  // Padding keys get -inf; a row of only padding would give NaN, so such rows keep key 0.
  auto mask = padding_mask.clone();
  mask.select(1, 0).fill_(false);
  scores = scores.masked_fill(mask.view({n, 1, 1, l}), -std::numeric_limits<float>::infinity());
  auto attended = torch::matmul(scores.softmax(-1), v).transpose(1, 2).reshape({n, l, d});
  auto h = x + proj(attended);
  return h + fc2(torch::gelu(fc1(norm2(h))));
}

caption_encoder_impl::caption_encoder_impl(caption_encoder_options opts, int64_t output_size)
  : options(opts),
    token_embedding(register_module(
      "token_embedding", torch::nn::Embedding(caption_padding_token + 1, opts.width))),
    position_embedding(register_parameter(
      "position_embedding", torch::randn({opts.max_bytes, opts.width}) * 0.02)),
    final_norm(register_module("final_norm",
                               torch::nn::LayerNorm(torch::nn::LayerNormOptions({opts.width})))),
    output(register_module("output", torch::nn::Linear(opts.width, output_size))),
    null_embedding(register_parameter("null_embedding", torch::randn({output_size}) * 0.02)) {
  for (int64_t i = 0; i < opts.layers; ++i)
    layers->push_back(text_layer(opts.width, opts.num_heads));
  register_module("layers", layers);
  torch::NoGradGuard no_grad;
  torch::nn::init::normal_(token_embedding->weight, 0.0, 0.02);
}

torch::Tensor caption_encoder_impl::forward(const torch::Tensor& tokens,
                                            const torch::Tensor& is_null) {
  auto padding = tokens.eq(caption_padding_token);
  auto x = token_embedding(tokens) + position_embedding.slice(0, 0, tokens.size(1)).unsqueeze(0);
  for (auto& layer : *layers)
    x = layer->as<text_layer>()->forward(x, padding);
  x = final_norm(x);
  auto keep = (~padding).to(x.dtype()).unsqueeze(-1);
  auto counts = keep.sum(1);
  auto pooled = output((x * keep).sum(1) / counts.clamp_min(1.0));
  auto use_null = counts.squeeze(-1).eq(0);
  if (is_null.defined())
    use_null = use_null.logical_or(is_null);
  return torch::where(use_null.unsqueeze(-1), null_embedding.unsqueeze(0).expand_as(pooled),
                      pooled);
}

} // namespace ddactor
