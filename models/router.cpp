// The DDM router; see router.hpp.
#include "models/router.hpp"

#include <stdexcept>

namespace ddactor {

router_impl::router_impl(router_options o)
  : patch_embed(register_module(
      "patch_embed", torch::nn::Conv2d(torch::nn::Conv2dOptions(o.in_channels, o.hidden_size,
                                                                o.patch_size)
                                         .stride(o.patch_size)))),
    t_embedder(register_module("t_embedder", timestep_embedder(o.hidden_size))),
    norm(register_module("norm",
                         torch::nn::LayerNorm(torch::nn::LayerNormOptions({o.hidden_size})))),
    head(register_module("head", torch::nn::Linear(o.hidden_size, o.num_experts))),
    options_(o) {
  if (o.image_size % o.patch_size != 0)
    throw std::invalid_argument("router: image size must be divisible by the patch size");
  if (o.num_experts < 1)
    throw std::invalid_argument("router: at least one expert");
  pos_embed = register_buffer(
    "pos_embed", sincos_2d_position_embedding(o.hidden_size, o.image_size / o.patch_size));
  if (o.num_classes > 0)
    label_embedder = register_module("label_embedder",
                                     torch::nn::Embedding(o.num_classes + 1, o.hidden_size));
  for (int64_t i = 0; i < o.depth; ++i)
    blocks->push_back(dit_block(o.hidden_size, o.num_heads, o.mlp_ratio));
  register_module("blocks", blocks);
  torch::NoGradGuard no_grad;
  for (auto& module : modules(false))
    if (auto* linear = module->as<torch::nn::Linear>()) {
      torch::nn::init::xavier_uniform_(linear->weight);
      if (linear->bias.defined())
        linear->bias.zero_();
    }
  // Start from uniform predictions: the head learns the prior and the evidence from there.
  head->weight.zero_();
}

torch::Tensor router_impl::forward(const torch::Tensor& x, const torch::Tensor& t,
                                   const torch::Tensor& labels) {
  auto tokens = patch_embed(x).flatten(2).transpose(1, 2) + pos_embed.unsqueeze(0);
  auto c = t_embedder(t);
  if (options_.num_classes > 0) {
    auto classes = labels.defined()
                     ? labels.to(torch::kInt64)
                     : torch::full({x.size(0)}, options_.num_classes, torch::kInt64);
    if (classes.size(0) != x.size(0))
      throw std::invalid_argument("router: one class per image");
    if (classes.numel() > 0 &&
        (classes.min().item<int64_t>() < 0 ||
         classes.max().item<int64_t>() > options_.num_classes))
      throw std::invalid_argument("router: a class outside [0, num_classes]");
    c = c + label_embedder(classes);
  }
  for (auto& block : *blocks)
    tokens = block->as<dit_block>()->forward(tokens, c);
  return head(norm(tokens).mean(1));
}

torch::Tensor router_impl::probabilities(const torch::Tensor& x, const torch::Tensor& t,
                                         const torch::Tensor& labels) {
  return forward(x, t, labels).softmax(-1);
}

} // namespace ddactor
