#include "models/frechet_distance.hpp"

#include <gtest/gtest.h>

namespace ddactor {
namespace {

TEST(frechet_distance, identical_statistics_give_zero) {
  torch::manual_seed(0);
  auto stats = fit_gaussian(torch::randn({500, 8}));
  EXPECT_NEAR(frechet_distance(stats, stats), 0.0, 1e-9);
}

TEST(frechet_distance, shifted_means_add_squared_distance) {
  gaussian_statistics a{torch::zeros({3}, torch::kFloat64), torch::eye(3, torch::kFloat64)};
  gaussian_statistics b{torch::tensor({1.0, 2.0, 2.0}, torch::kFloat64),
                        torch::eye(3, torch::kFloat64)};
  EXPECT_NEAR(frechet_distance(a, b), 9.0, 1e-9);
}

TEST(frechet_distance, scaled_covariances_match_the_closed_form) {
  // S1 = I, S2 = 4 I in D dims: tr(I + 4I - 2 * 2I) = D.
  gaussian_statistics a{torch::zeros({5}, torch::kFloat64), torch::eye(5, torch::kFloat64)};
  gaussian_statistics b{torch::zeros({5}, torch::kFloat64), 4 * torch::eye(5, torch::kFloat64)};
  EXPECT_NEAR(frechet_distance(a, b), 5.0, 1e-9);
}

TEST(frechet_distance, non_commuting_covariances_match_the_1d_formula_per_axis_when_diagonal) {
  // Diagonal covariances: d = sum (sqrt(a_i) - sqrt(b_i))^2.
  auto da = torch::tensor({1.0, 9.0, 0.25}, torch::kFloat64);
  auto db = torch::tensor({4.0, 1.0, 0.25}, torch::kFloat64);
  gaussian_statistics a{torch::zeros({3}, torch::kFloat64), torch::diag(da)};
  gaussian_statistics b{torch::zeros({3}, torch::kFloat64), torch::diag(db)};
  EXPECT_NEAR(frechet_distance(a, b), 1.0 + 4.0 + 0.0, 1e-9);
}

TEST(frechet_distance, fit_rejects_too_few_samples) {
  EXPECT_THROW(fit_gaussian(torch::randn({1, 4})), std::invalid_argument);
}

} // namespace
} // namespace ddactor
