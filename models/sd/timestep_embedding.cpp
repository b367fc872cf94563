// Sinusoidal timestep projection and the timestep MLP; see timestep_embedding.hpp.
#include "models/sd/timestep_embedding.hpp"

#include <cmath>

namespace ddactor {

torch::Tensor sinusoidal_timestep_projection(const torch::Tensor& timesteps, int64_t dim,
                                             bool flip_sin_to_cos, double freq_shift,
                                             double max_period) {
  TORCH_CHECK(timesteps.dim() == 1, "timesteps must be one-dimensional, got shape ",
              timesteps.sizes());
  const auto half = dim / 2;
  // The operation order of diffusers' get_timestep_embedding, in float32, so that the
  // frequencies round the same way.
  const auto options = torch::TensorOptions(torch::kFloat32).device(timesteps.device());
  auto exponent = torch::arange(half, options)
                    .mul(-std::log(max_period))
                    .div(static_cast<double>(half) - freq_shift);
  auto angles = timesteps.to(torch::kFloat32).unsqueeze(1) * exponent.exp().unsqueeze(0);
  auto out = flip_sin_to_cos ? torch::cat({angles.cos(), angles.sin()}, -1)
                             : torch::cat({angles.sin(), angles.cos()}, -1);
  if (dim % 2 == 1)
    out = torch::nn::functional::pad(out, torch::nn::functional::PadFuncOptions({0, 1}));
  return out;
}

timestep_embedding_impl::timestep_embedding_impl(int64_t in_channels, int64_t embedding_dim,
                                                 activation_function activation,
                                                 std::optional<activation_function> post_activation)
  : linear_1(register_module("linear_1", torch::nn::Linear(in_channels, embedding_dim))),
    linear_2(register_module("linear_2", torch::nn::Linear(embedding_dim, embedding_dim))),
    activation_(activation),
    post_activation_(post_activation) {}

torch::Tensor timestep_embedding_impl::forward(const torch::Tensor& projected_timesteps) {
  auto h = linear_2(apply_activation(activation_, linear_1(projected_timesteps)));
  return post_activation_ ? apply_activation(*post_activation_, h) : h;
}

} // namespace ddactor
