#pragma once
// The router of a Decentralized Diffusion Model (McAllister et al. 2025): a small DiT-style
// classifier that predicts which data cluster a noisy image x_t at time t came from,
// p(cluster | x_t, t, class). At inference its probabilities weight the experts' velocities.
//
//   x_t --patchify--> tokens + sin-cos positions --[DiT blocks, adaLN from t + class]-->
//       LayerNorm --mean over tokens--> linear --> K logits
//
// For class-conditional data the router sees the requested class, as the experts do: with
// class-pure clusters an unconditioned router sends a "bag" at high noise to the largest
// cluster's expert, which has never seen a bag (measured: FD 220 against 141 for the monolith;
// see the README's replication table). A null class (dropped in training like the DiT's) gives
// p(cluster | x_t, t) for unconditional requests.

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
  /// Classes of the conditioning (0: unconditioned, e.g. for captioned data).
  int64_t num_classes = 0;
};

struct router_impl : torch::nn::Module {
  explicit router_impl(router_options options);

  /// Cluster logits (N, K) for noisy images (N, C, H, W) at times t (N), given their classes
  /// (N int64; num_classes is the null class; undefined: all null; ignored when unconditioned).
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& t,
                        const torch::Tensor& labels = {});
  /// softmax(forward(x, t, labels)).
  torch::Tensor probabilities(const torch::Tensor& x, const torch::Tensor& t,
                              const torch::Tensor& labels = {});

  const router_options& options() const { return options_; }

  torch::nn::Conv2d patch_embed;
  torch::Tensor pos_embed;
  timestep_embedder t_embedder;
  torch::nn::Embedding label_embedder{nullptr};  // num_classes + 1 rows; the last is "null"
  torch::nn::ModuleList blocks;
  torch::nn::LayerNorm norm;
  torch::nn::Linear head;

 private:
  router_options options_;
};
TORCH_MODULE_IMPL(router, router_impl);

} // namespace ddactor
