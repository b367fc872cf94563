#pragma once
// How the SD UNet sees the diffusion timestep: diffusers' `Timesteps` projects it onto sinusoids
// (the Transformer's position encoding, as DDPM uses it), and `TimestepEmbedding` maps those
// through linear_1 -> act -> linear_2 to the width every ResNet block adds to its features.

#include <torch/torch.h>

#include <optional>

#include "models/sd/activation_function.hpp"

namespace ddactor {

/// timesteps (N), integer or float -> (N, dim) float32: for the `dim/2` frequencies
/// f_i = exp(-ln(max_period) * i / (dim/2 - freq_shift)), [sin(t f) | cos(t f)], or
/// [cos | sin] with flip_sin_to_cos (SD's layout). An odd dim gets a zero last column.
torch::Tensor sinusoidal_timestep_projection(const torch::Tensor& timesteps, int64_t dim,
                                             bool flip_sin_to_cos, double freq_shift,
                                             double max_period = 10000.0);

/// diffusers' TimestepEmbedding: linear_1 -> act -> linear_2 (-> post_act where configured).
struct timestep_embedding_impl : torch::nn::Module {
  timestep_embedding_impl(int64_t in_channels, int64_t embedding_dim,
                          activation_function activation,
                          std::optional<activation_function> post_activation = std::nullopt);
  torch::Tensor forward(const torch::Tensor& projected_timesteps);

  torch::nn::Linear linear_1{nullptr};
  torch::nn::Linear linear_2{nullptr};

private:
  activation_function activation_;
  std::optional<activation_function> post_activation_;
};
TORCH_MODULE_IMPL(timestep_embedding, timestep_embedding_impl);

} // namespace ddactor
