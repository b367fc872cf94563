#include "models/outer_optimizer.hpp"

#include <gtest/gtest.h>

namespace ddactor {
namespace {

TEST(outer_nesterov, matches_hand_computed_steps) {
  auto params = torch::tensor({1.0f, 2.0f});
  outer_nesterov outer(params, /*lr=*/0.5, /*momentum=*/0.9);
  // Local steps moved the parameters to (0.8, 2.4): delta = anchor - params = (0.2, -0.4).
  params.copy_(torch::tensor({0.8f, 2.4f}));
  auto delta = outer.pseudo_gradient(params);
  ASSERT_EQ(delta.size(), 2u);
  EXPECT_FLOAT_EQ(delta[0], 0.2f);
  EXPECT_FLOAT_EQ(delta[1], -0.4f);
  outer.step(delta, params);
  // m = delta; update = delta + 0.9 m = 1.9 delta; anchor = 1 - 0.5 * 0.38 = 0.81, 2 + 0.38.
  EXPECT_NEAR(params[0].item<float>(), 0.81f, 1e-6);
  EXPECT_NEAR(params[1].item<float>(), 2.38f, 1e-6);
  EXPECT_TRUE(torch::equal(outer.anchor(), params));
  // A second, zero delta still moves by the momentum: m = 0.9 m; update = 0.81 m.
  outer.step(std::vector<float>{0.0f, 0.0f}, params);
  EXPECT_NEAR(params[0].item<float>(), 0.81f - 0.5f * 0.81f * 0.2f, 1e-6);
}

TEST(outer_nesterov, with_lr_1_and_no_momentum_is_plain_averaging) {
  auto params = torch::tensor({3.0f});
  outer_nesterov outer(params, 1.0, 0.0);
  params.fill_(1.0f);
  outer.step(outer.pseudo_gradient(params), params);
  EXPECT_FLOAT_EQ(params[0].item<float>(), 1.0f);
}

// Overlap: the round of (0.8, 2.4) ran while local steps moved on to (0.7, 2.5); the new anchor is
// the same as without overlap, and the local progress made meanwhile, (-0.1, +0.1), stays on it.
TEST(outer_nesterov, a_step_keeping_progress_moves_the_anchor_alike_and_keeps_local_steps) {
  auto params = torch::tensor({1.0f, 2.0f});
  outer_nesterov outer(params, /*lr=*/0.5, /*momentum=*/0.9);
  params.copy_(torch::tensor({0.8f, 2.4f}));
  const auto sent = params.clone();
  auto delta = outer.pseudo_gradient(params);
  params.copy_(torch::tensor({0.7f, 2.5f}));
  outer.step_keeping_progress(delta, params, sent);
  EXPECT_NEAR(outer.anchor()[0].item<float>(), 0.81f, 1e-6);
  EXPECT_NEAR(outer.anchor()[1].item<float>(), 2.38f, 1e-6);
  EXPECT_NEAR(params[0].item<float>(), 0.71f, 1e-6);
  EXPECT_NEAR(params[1].item<float>(), 2.48f, 1e-6);
  // Without local steps in between it is the plain step.
  outer_nesterov plain(torch::tensor({1.0f, 2.0f}), 0.5, 0.9);
  auto same = torch::tensor({0.8f, 2.4f});
  plain.step(delta, same);
  auto kept = torch::tensor({0.8f, 2.4f});
  outer_nesterov keeping(torch::tensor({1.0f, 2.0f}), 0.5, 0.9);
  keeping.step_keeping_progress(delta, kept, kept.clone());
  EXPECT_TRUE(torch::allclose(same, kept));
  EXPECT_THROW(keeping.step_keeping_progress(delta, kept, torch::zeros({3})),
               std::invalid_argument);
}

TEST(outer_nesterov, refuses_wrong_sizes) {
  auto params = torch::zeros({3});
  outer_nesterov outer(params, 0.7, 0.9);
  EXPECT_THROW(outer.step(std::vector<float>{1.0f}, params), std::invalid_argument);
}

} // namespace
} // namespace ddactor
