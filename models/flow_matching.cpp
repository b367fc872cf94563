// Flow-matching objective; see flow_matching.hpp.
#include "models/flow_matching.hpp"

namespace ddactor {

torch::Tensor sample_logit_normal_t(int64_t batch, double mean, double std,
                                    const torch::TensorOptions& options) {
  return torch::sigmoid(torch::randn({batch}, options) * std + mean);
}

torch::Tensor interpolate_flow(const torch::Tensor& x0, const torch::Tensor& noise,
                               const torch::Tensor& t) {
  auto shape = std::vector<int64_t>(static_cast<size_t>(x0.dim()), 1);
  shape[0] = -1;
  auto tt = t.view(shape);
  return (1 - tt) * x0 + tt * noise;
}

torch::Tensor flow_target(const torch::Tensor& x0, const torch::Tensor& noise) {
  return noise - x0;
}

torch::Tensor flow_matching_loss(const torch::Tensor& predicted_velocity, const torch::Tensor& x0,
                                 const torch::Tensor& noise) {
  return torch::mse_loss(predicted_velocity, flow_target(x0, noise));
}

} // namespace ddactor
