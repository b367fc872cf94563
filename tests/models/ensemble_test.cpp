#include "models/ensemble.hpp"

#include <gtest/gtest.h>

namespace ddactor {
namespace {

TEST(ensemble, routing_weights_by_hand) {
  auto p = torch::tensor({{0.1f, 0.6f, 0.3f}, {0.5f, 0.2f, 0.3f}});
  auto top1 = routing_weights(p, routing_strategy::top1);
  EXPECT_TRUE(torch::equal(top1, torch::tensor({{0.0f, 1.0f, 0.0f}, {1.0f, 0.0f, 0.0f}})));
  auto top2 = routing_weights(p, routing_strategy::topk, 2);
  EXPECT_TRUE(torch::allclose(top2, torch::tensor({{0.0f, 2.0f / 3, 1.0f / 3},
                                                   {0.625f, 0.0f, 0.375f}})));
  auto full = routing_weights(p, routing_strategy::full);
  EXPECT_TRUE(torch::allclose(full, p));
  // top-k with k beyond K is the full ensemble.
  EXPECT_TRUE(torch::allclose(routing_weights(p, routing_strategy::topk, 9), p));
}

TEST(ensemble, combine_velocities_by_hand) {
  auto w = torch::tensor({{0.25f, 0.75f}, {1.0f, 0.0f}});
  auto v0 = torch::full({2, 1, 1, 1}, 4.0f);
  auto v1 = torch::full({2, 1, 1, 1}, 8.0f);
  auto u = combine_velocities(w, {v0, v1});
  EXPECT_FLOAT_EQ(u[0].item<float>(), 0.25f * 4 + 0.75f * 8);
  EXPECT_FLOAT_EQ(u[1].item<float>(), 4.0f);
  // An expert nobody selected may be missing.
  EXPECT_FLOAT_EQ(combine_velocities(torch::tensor({{1.0f, 0.0f}}), {v0.slice(0, 0, 1), {}})
                    .item<float>(),
                  4.0f);
}

// Experts that return a constant velocity equal to their index + 1, counting calls.
std::vector<expert_function> constant_experts(int k, std::shared_ptr<std::vector<int>> calls,
                                              int dead = -1) {
  std::vector<expert_function> out;
  for (int i = 0; i < k; ++i)
    out.push_back([i, calls, dead](const torch::Tensor& x, const torch::Tensor&,
                                   const dit_condition&) {
      if (i == dead)
        throw expert_unavailable(i, "peer died");
      (*calls)[static_cast<size_t>(i)] += static_cast<int>(x.size(0));
      return torch::full_like(x, static_cast<float>(i + 1));
    });
  return out;
}

TEST(ensemble, fixed_weights_run_only_the_selected_experts) {
  auto calls = std::make_shared<std::vector<int>>(3, 0);
  ensemble_options o;
  o.strategy = routing_strategy::fixed;
  o.fixed_weights = torch::tensor({{0.0f, 0.0f, 1.0f}, {0.5f, 0.5f, 0.0f}});
  auto v = ensemble_velocity(router(nullptr), constant_experts(3, calls), {}, o);
  auto u = v(torch::zeros({2, 1, 2, 2}), torch::full({2}, 0.5));
  EXPECT_FLOAT_EQ(u[0][0][0][0].item<float>(), 3.0f);
  EXPECT_FLOAT_EQ(u[1][0][0][0].item<float>(), 1.5f);
  EXPECT_EQ((*calls)[0], 1);
  EXPECT_EQ((*calls)[1], 1);
  EXPECT_EQ((*calls)[2], 1);
}

TEST(ensemble, a_dead_expert_falls_back_to_the_next_best) {
  auto calls = std::make_shared<std::vector<int>>(3, 0);
  ensemble_options o;
  o.strategy = routing_strategy::fixed;
  // Sample 0 prefers expert 2 (dead), then expert 1.
  o.fixed_weights = torch::tensor({{0.1f, 0.3f, 0.6f}});
  auto top1 = o;
  auto unavailable = std::make_shared<std::set<int64_t>>();
  // Fixed weights are used as probabilities; emulate top-1 on them through the strategy below.
  top1.strategy = routing_strategy::fixed;
  auto v = ensemble_velocity(router(nullptr), constant_experts(3, calls, /*dead=*/2), {}, top1,
                             unavailable);
  auto u = v(torch::zeros({1, 1, 1, 1}), torch::full({1}, 0.5));
  // Full weights over the survivors 0 and 1: (0.1 * 1 + 0.3 * 2) / 0.4.
  EXPECT_NEAR(u.item<float>(), (0.1f * 1 + 0.3f * 2) / 0.4f, 1e-5);
  EXPECT_EQ(unavailable->count(2), 1u);
  o.fall_back = false;
  auto strict = ensemble_velocity(router(nullptr), constant_experts(3, calls, 2), {}, o);
  EXPECT_THROW(strict(torch::zeros({1, 1, 1, 1}), torch::full({1}, 0.5)), expert_unavailable);
}

TEST(ensemble, router_top1_picks_the_most_probable_expert) {
  router_options ro;
  ro.image_size = 4;
  ro.patch_size = 2;
  ro.hidden_size = 8;
  ro.depth = 1;
  ro.num_heads = 2;
  ro.num_experts = 3;
  torch::manual_seed(0);
  router r(ro);
  {
    torch::NoGradGuard g;
    // A head whose bias makes expert 1 the most probable for every input.
    r->head->bias.copy_(torch::tensor({0.0f, 5.0f, 0.0f}));
  }
  auto calls = std::make_shared<std::vector<int>>(3, 0);
  ensemble_options o;
  o.strategy = routing_strategy::top1;
  auto u = ensemble_velocity(r, constant_experts(3, calls), {}, o)(torch::randn({4, 1, 4, 4}),
                                                                   torch::rand({4}));
  EXPECT_TRUE(torch::allclose(u, torch::full_like(u, 2.0f)));
  EXPECT_EQ((*calls)[1], 4);
  EXPECT_EQ((*calls)[0] + (*calls)[2], 0);
}

} // namespace
} // namespace ddactor
