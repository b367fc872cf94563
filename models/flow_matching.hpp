#pragma once
// Rectified flow / flow matching (Lipman et al. 2023; Liu et al. 2023), as in SD3 (Esser et al.
// 2024): x_t = (1 - t) x0 + t eps, the network predicts the velocity eps - x0, and t is drawn
// from a logit-normal distribution, which spends more training on the middle of the path.

#include <torch/torch.h>

namespace ddactor {

/// t = sigmoid(mean + std * n), n ~ N(0, 1); shape (batch).
torch::Tensor sample_logit_normal_t(int64_t batch, double mean, double std,
                                    const torch::TensorOptions& options = {});

/// The noisy point on the straight path between data x0 and noise eps at times t (N).
torch::Tensor interpolate_flow(const torch::Tensor& x0, const torch::Tensor& noise,
                               const torch::Tensor& t);

/// The velocity the network should predict: eps - x0.
torch::Tensor flow_target(const torch::Tensor& x0, const torch::Tensor& noise);

/// Mean squared error between predicted and target velocity.
torch::Tensor flow_matching_loss(const torch::Tensor& predicted_velocity, const torch::Tensor& x0,
                                 const torch::Tensor& noise);

} // namespace ddactor
