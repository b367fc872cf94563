#include "models/samplers.hpp"

#include <gtest/gtest.h>

#include <cmath>

namespace ddactor {
namespace {

// dx/dt = a x integrates from x(1) to x(0) = x(1) exp(-a).
velocity_field linear_field(double a) {
  return [a](const torch::Tensor& x, const torch::Tensor&) { return a * x; };
}

double final_error(sampler_kind kind, int steps) {
  auto x1 = torch::ones({1, 1}, torch::kFloat64);
  auto x0 = sample_flow(linear_field(1.0), x1, steps, kind);
  return std::abs(x0.item<double>() - std::exp(-1.0));
}

TEST(samplers, constant_velocity_is_exact) {
  auto v = [](const torch::Tensor& x, const torch::Tensor&) { return torch::full_like(x, 2.0); };
  for (auto kind : {sampler_kind::euler, sampler_kind::heun}) {
    auto out = sample_flow(v, torch::zeros({2, 3}, torch::kFloat64), 7, kind);
    EXPECT_NEAR(out[0][0].item<double>(), -2.0, 1e-12);
  }
}

TEST(samplers, euler_converges_at_first_order) {
  double e10 = final_error(sampler_kind::euler, 10), e20 = final_error(sampler_kind::euler, 20);
  EXPECT_NEAR(e10 / e20, 2.0, 0.15);
}

TEST(samplers, heun_converges_at_second_order) {
  double e10 = final_error(sampler_kind::heun, 10), e20 = final_error(sampler_kind::heun, 20);
  EXPECT_NEAR(e10 / e20, 4.0, 0.3);
  EXPECT_LT(e10, final_error(sampler_kind::euler, 10) / 10);
}

TEST(samplers, time_grid_runs_from_one_to_zero) {
  std::vector<double> seen;
  auto v = [&](const torch::Tensor& x, const torch::Tensor& t) {
    seen.push_back(t[0].item<double>());
    return torch::zeros_like(x);
  };
  sample_flow(v, torch::zeros({1}), 4, sampler_kind::heun);
  std::vector<double> expected{1.0, 0.75, 0.75, 0.5, 0.5, 0.25, 0.25, 0.0};
  ASSERT_EQ(seen.size(), expected.size());
  for (size_t i = 0; i < seen.size(); ++i)
    EXPECT_NEAR(seen[i], expected[i], 1e-7);
}

TEST(samplers, parse_rejects_unknown_names) {
  EXPECT_EQ(parse_sampler("heun"), sampler_kind::heun);
  EXPECT_THROW(parse_sampler("ddim"), std::invalid_argument);
}

TEST(samplers, guidance_extrapolates_from_the_null_branch) {
  dit_options o;
  o.image_size = 4;
  o.patch_size = 2;
  o.hidden_size = 16;
  o.depth = 1;
  o.num_heads = 2;
  o.num_classes = 3;
  torch::manual_seed(0);
  dit model(o);
  torch::NoGradGuard guard;
  for (auto& p : model->parameters())
    p.copy_(torch::randn_like(p) * 0.1);
  dit_condition cond;
  cond.labels = torch::tensor({1, 2}, torch::kInt64);
  auto x = torch::randn({2, 1, 4, 4});
  auto t = torch::full({2}, 0.5);
  auto v_c = model->forward(x, t, cond);
  auto v_u = model->forward(x, t, cond.as_null());
  auto guided = guided_velocity(model, cond, 3.0)(x, t);
  EXPECT_TRUE(torch::allclose(guided, v_u + 3.0 * (v_c - v_u), 1e-5, 1e-5));
  EXPECT_TRUE(torch::allclose(guided_velocity(model, cond, 1.0)(x, t), v_c));
}

} // namespace
} // namespace ddactor
