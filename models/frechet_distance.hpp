#pragma once
// The Frechet distance between two Gaussians fitted to feature sets (Heusel et al. 2017, "FID"):
//   d^2 = |mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2)).
// Computed in double precision; the trace of the matrix square root comes from the eigenvalues
// of the symmetric matrix S1^(1/2) S2 S1^(1/2), which has the same spectrum as S1 S2 and no
// complex round-off.

#include <torch/torch.h>

namespace ddactor {

struct gaussian_statistics {
  torch::Tensor mean;        // (D) float64
  torch::Tensor covariance;  // (D, D) float64, unbiased
};

/// Mean and covariance of features (N, D), N >= 2.
gaussian_statistics fit_gaussian(const torch::Tensor& features);

double frechet_distance(const gaussian_statistics& a, const gaussian_statistics& b);

} // namespace ddactor
