// Frechet distance between feature Gaussians; see frechet_distance.hpp.
#include "models/frechet_distance.hpp"

#include <stdexcept>

namespace ddactor {

namespace {

// Square root of a symmetric positive semi-definite matrix (negative round-off clamped to 0).
torch::Tensor symmetric_sqrt(const torch::Tensor& m) {
  auto [values, vectors] = torch::linalg_eigh(m);
  return torch::matmul(vectors * values.clamp_min(0).sqrt().unsqueeze(0), vectors.t());
}

} // namespace

gaussian_statistics fit_gaussian(const torch::Tensor& features) {
  if (features.dim() != 2 || features.size(0) < 2)
    throw std::invalid_argument("fit_gaussian needs (N >= 2, D) features");
  auto x = features.to(torch::kFloat64);
  auto mean = x.mean(0);
  auto centred = x - mean;
  auto covariance = torch::matmul(centred.t(), centred) / static_cast<double>(x.size(0) - 1);
  return {mean, covariance};
}

double frechet_distance(const gaussian_statistics& a, const gaussian_statistics& b) {
  auto diff = a.mean - b.mean;
  auto root_a = symmetric_sqrt(a.covariance);
  auto middle = torch::matmul(torch::matmul(root_a, b.covariance), root_a);
  middle = (middle + middle.t()) / 2;  // symmetric up to round-off
  auto trace_sqrt = torch::linalg_eigvalsh(middle).clamp_min(0).sqrt().sum();
  auto d = diff.dot(diff) + a.covariance.trace() + b.covariance.trace() - 2 * trace_sqrt;
  return d.item<double>();
}

} // namespace ddactor
