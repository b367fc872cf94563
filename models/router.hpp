#pragma once
// The router of a Decentralized Diffusion Model (McAllister et al. 2025): a small DiT-style
// classifier that predicts which data cluster a noisy image x_t at time t came from,
// p(cluster | x_t, t). At inference its probabilities weight the experts' velocities.
//
//   x_t --patchify--> tokens + sin-cos positions --[DiT blocks, adaLN from t]--> LayerNorm
//       --mean over tokens--> linear --> K logits

#include <torch/torch.h>

#include "models/dit.hpp"

namespace ddactor {

struct router_options {
  int64_t image_size = 28;
  int64_t in_channels = 1;
  int64_t patch_size = 4;
  int64_t hidden_size = 128;
  int64_t depth = 2;
  int64_t num_heads = 4;
  double mlp_ratio = 4.0;
  int64_t num_experts = 4;
};

struct router_impl : torch::nn::Module {
  explicit router_impl(router_options options);

  /// Cluster logits (N, K) for noisy images (N, C, H, W) at times t (N).
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& t);
  /// softmax(forward(x, t)).
  torch::Tensor probabilities(const torch::Tensor& x, const torch::Tensor& t);

  const router_options& options() const { return options_; }

  torch::nn::Conv2d patch_embed;
  torch::Tensor pos_embed;
  timestep_embedder t_embedder;
  torch::nn::ModuleList blocks;
  torch::nn::LayerNorm norm;
  torch::nn::Linear head;

 private:
  router_options options_;
};
TORCH_MODULE_IMPL(router, router_impl);

} // namespace ddactor
