// step_ahead_probe: the guess's distance along and off the swarm's step, on a strided sample of
// the weights that stands for all of them where the steps are the same on every stride.
#include "models/step_ahead_probe.hpp"

#include <gtest/gtest.h>

#include <cmath>

namespace ddactor {
namespace {

// 200,000 weights: more than the sample, so every fourth one is read.
constexpr int64_t weights = 200000;

torch::Tensor start() { return torch::linspace(-0.1, 0.1, weights); }

// +1 and -1 in turn over the sampled coordinates: orthogonal to a constant step.
torch::Tensor alternating() {
  auto signs = torch::ones({weights});
  const int64_t stride = (weights + step_ahead_probe::sample_size - 1) /
                         step_ahead_probe::sample_size;
  for (int64_t i = 0; i < weights; ++i)
    if ((i / stride) % 2 == 1)
      signs[i] = -1.0f;
  return signs;
}

guess_score scored(const torch::Tensor& guessed_step, const torch::Tensor& swarm_step) {
  step_ahead_probe probe;
  probe.take_start(start());
  probe.take_guess(start() + guessed_step);
  const auto score = probe.score(start() + swarm_step);
  EXPECT_TRUE(score.has_value());
  return score.value_or(guess_score{});
}

TEST(step_ahead_probe, an_exact_guess_is_one_along_and_zero_off) {
  const auto step = 1e-3 * torch::ones({weights});
  const auto score = scored(step, step);
  EXPECT_NEAR(score.along, 1.0, 1e-3);
  EXPECT_NEAR(score.off, 0.0, 1e-3);
}

TEST(step_ahead_probe, a_long_guess_goes_further_along_and_is_off_by_the_excess) {
  const auto step = 1e-3 * torch::ones({weights});
  const auto score = scored(1.5 * step, step);
  EXPECT_NEAR(score.along, 1.5, 1e-3);
  EXPECT_NEAR(score.off, 0.5, 1e-3);
}

TEST(step_ahead_probe, noise_across_the_step_is_off_but_not_along) {
  const auto step = 1e-3 * torch::ones({weights});
  const auto score = scored(step + 1e-3 * alternating(), step);
  EXPECT_NEAR(score.along, 1.0, 1e-3);
  EXPECT_NEAR(score.off, 1.0, 1e-3);
  const auto backwards = scored(-step, step);
  EXPECT_NEAR(backwards.along, -1.0, 1e-3);
  EXPECT_NEAR(backwards.off, 2.0, 1e-3);
}

TEST(step_ahead_probe, means_cover_every_score) {
  const auto step = 1e-3 * torch::ones({weights});
  step_ahead_probe probe;
  EXPECT_EQ(probe.means().scored, 0);
  for (const double length : {1.0, 1.5}) {
    probe.take_start(start());
    probe.take_guess(start() + length * step);
    ASSERT_TRUE(probe.score(start() + step).has_value());
  }
  const auto means = probe.means();
  EXPECT_EQ(means.scored, 2);
  EXPECT_NEAR(means.along, 1.25, 1e-3);
  EXPECT_NEAR(means.off, 0.25, 1e-3);
}

TEST(step_ahead_probe, scores_each_guess_once_and_nothing_without_one_or_without_a_step) {
  step_ahead_probe probe;
  EXPECT_FALSE(probe.score(start()).has_value());  // no guess taken
  probe.take_start(start());
  probe.take_guess(start() + 1e-3);
  EXPECT_FALSE(probe.score(start()).has_value());  // the swarm did not move
  EXPECT_FALSE(probe.score(start() + 1e-3).has_value());  // that guess is done
  probe.take_start(start());
  probe.take_guess(start() + 1e-3);
  probe.drop();  // the round applied no swarm step
  EXPECT_FALSE(probe.score(start() + 1e-3).has_value());
  EXPECT_EQ(probe.means().scored, 0);
}

} // namespace
} // namespace ddactor
