#include "models/diffusion_trainer.hpp"

#include <gtest/gtest.h>

#include "tests/models/tiny_dit.hpp"

namespace ddactor {
namespace {


TEST(diffusion_trainer, loss_goes_down_on_a_fixed_batch) {
  trainer_settings s;
  s.lr = 3e-3;
  s.warmup_steps = 0;
  diffusion_trainer trainer(tiny_dit::model(), s);
  auto batch = tiny_dit::fixed_batch(32);
  double first = 0, last = 0;
  for (int i = 0; i < 5; ++i)
    first += trainer.train_step(batch).loss / 5;
  for (int i = 0; i < 150; ++i)
    trainer.train_step(batch);
  for (int i = 0; i < 5; ++i)
    last += trainer.train_step(batch).loss / 5;
  EXPECT_LT(last, first * 0.6) << "first " << first << " last " << last;
  EXPECT_EQ(trainer.step(), 160);
}

TEST(diffusion_trainer, ema_trails_the_model) {
  trainer_settings s;
  s.ema_decay = 0.9;
  diffusion_trainer trainer(tiny_dit::model(), s);
  auto before = trainer.ema_parameters().values().clone();
  auto batch = tiny_dit::fixed_batch(8);
  for (int i = 0; i < 30; ++i)
    trainer.train_step(batch);
  auto model = trainer.parameters().values();
  auto ema = trainer.ema_parameters().values();
  EXPECT_FALSE(torch::equal(ema, before));
  EXPECT_FALSE(torch::equal(ema, model));
  EXPECT_LT((ema - model).norm().item<double>(), (before - model).norm().item<double>());
}

TEST(diffusion_trainer, accumulation_equals_one_big_batch) {
  trainer_settings s;
  s.condition_dropout = 0;
  diffusion_trainer a(tiny_dit::model(), s);
  diffusion_trainer b(tiny_dit::model(), s);
  ASSERT_TRUE(torch::equal(a.parameters().values(), b.parameters().values()));
  // Same random stream: 8 + 8 samples in two calls vs 16 in one uses the same noise only if the
  // draws line up, so compare the accumulated gradient against the mean of two separate ones.
  auto half = tiny_dit::fixed_batch(8);
  a.accumulate(half);
  a.accumulate(half);
  auto g_acc = a.parameters().gradients().clone() / 16;
  b.accumulate(half);
  auto g1 = b.parameters().gradients().clone();
  b.parameters().zero_gradients();
  b.accumulate(half);
  auto g2 = b.parameters().gradients().clone();
  EXPECT_TRUE(torch::allclose(g_acc, (g1 + g2) / 16, 1e-4, 1e-6));
  EXPECT_EQ(a.accumulated_samples(), 16);
}

// Overlap (averaging.overlap): the next epoch's gradients accumulate while this epoch's average
// is in flight. Applying the average must give the same weights and optimizer state as without
// anything accumulated, and leave the new accumulation untouched.
TEST(diffusion_trainer, applying_a_gradient_leaves_the_next_accumulation_alone) {
  trainer_settings s;
  s.condition_dropout = 0;
  s.grad_clip = 1e-3;  // clipping acts on the applied gradient, not on the accumulation
  diffusion_trainer waiting(tiny_dit::model(), s);
  diffusion_trainer overlapping(tiny_dit::model(), s);
  auto batch = tiny_dit::fixed_batch(8);
  waiting.accumulate(batch);
  overlapping.accumulate(batch);
  auto average = waiting.take_mean_gradient();
  EXPECT_EQ(average, overlapping.take_mean_gradient());
  EXPECT_EQ(waiting.accumulated_samples(), 0);
  EXPECT_EQ(waiting.parameters().gradients().abs().sum().item<float>(), 0.0f);

  overlapping.accumulate(batch);  // the next epoch, computed on the weights not yet updated
  const auto next = overlapping.parameters().gradients().clone();
  waiting.apply_gradient(average);
  overlapping.apply_gradient(average);
  EXPECT_TRUE(torch::equal(waiting.parameters().values(), overlapping.parameters().values()));
  EXPECT_TRUE(torch::equal(waiting.optimizer().exp_avg(), overlapping.optimizer().exp_avg()));
  EXPECT_TRUE(torch::equal(waiting.optimizer().exp_avg_sq(), overlapping.optimizer().exp_avg_sq()));
  EXPECT_TRUE(torch::equal(overlapping.parameters().gradients(), next));
  EXPECT_EQ(overlapping.accumulated_samples(), 8);
  EXPECT_EQ(waiting.parameters().gradients().abs().sum().item<float>(), 0.0f);
  EXPECT_EQ(waiting.step(), overlapping.step());
}

// averaging.step_ahead's guess is one peer's share of the gradient, clipped as if its norm were
// the last average's: the scale train.grad_clip applies is grad_clip / that norm, and nothing
// when that norm is within the clip.
TEST(diffusion_trainer, a_gradient_can_be_clipped_as_if_its_norm_were_another) {
  trainer_settings clipped;
  clipped.grad_clip = 1.0;
  trainer_settings unclipped;
  unclipped.grad_clip = 0;
  diffusion_trainer as_if(tiny_dit::model(), clipped);
  diffusion_trainer scaled(tiny_dit::model(), unclipped);
  diffusion_trainer own_norm(tiny_dit::model(), clipped);
  const auto size = as_if.parameters().values().numel();
  // Norm 4: clipped by its own norm it would shrink to 1; as if of norm 2, to 2.
  std::vector<float> gradient(static_cast<std::size_t>(size), 0.0f);
  for (std::size_t k = 0; k < gradient.size(); ++k)
    gradient[k] = (k % 3 == 0 ? 1.0f : -0.5f);
  const auto norm = torch::tensor(gradient).norm().item<double>();
  for (auto& g : gradient)
    g *= static_cast<float>(4.0 / norm);
  std::vector<float> half(gradient);
  for (auto& g : half)
    g *= 0.5f;

  const auto result = as_if.apply_guess(gradient, 2.0, 1.0);
  scaled.apply_gradient(half);
  own_norm.apply_gradient(gradient);
  EXPECT_NEAR(result.grad_norm, 4.0, 1e-3);  // the gradient's own norm, as before
  EXPECT_TRUE(torch::allclose(as_if.optimizer().exp_avg(), scaled.optimizer().exp_avg(), 1e-5,
                              1e-9));
  EXPECT_TRUE(torch::allclose(as_if.optimizer().exp_avg_sq(), scaled.optimizer().exp_avg_sq(),
                              1e-5, 1e-12));
  EXPECT_FALSE(torch::allclose(as_if.optimizer().exp_avg(), own_norm.optimizer().exp_avg(), 1e-3,
                               1e-9));

  // As if within the clip: the gradient goes in unscaled.
  diffusion_trainer within(tiny_dit::model(), clipped);
  diffusion_trainer plain(tiny_dit::model(), unclipped);
  within.apply_guess(gradient, 0.5, 1.0);
  plain.apply_gradient(gradient);
  EXPECT_TRUE(torch::equal(within.optimizer().exp_avg(), plain.optimizer().exp_avg()));
  EXPECT_TRUE(torch::equal(within.parameters().values(), plain.parameters().values()));
}

TEST(diffusion_trainer, rng_state_makes_steps_reproducible) {
  diffusion_trainer a(tiny_dit::model(), {});
  auto batch = tiny_dit::fixed_batch(8);
  a.train_step(batch);
  auto state = a.rng_state();
  auto params = a.parameters().values().clone();
  auto loss1 = a.train_step(batch).loss;
  a.set_rng_state(state);
  a.parameters().values().copy_(params);
  // Optimizer moments moved on, but the loss of the forward pass depends only on params + noise.
  a.parameters().zero_gradients();
  auto loss2 = a.accumulate(batch);
  EXPECT_DOUBLE_EQ(loss1, loss2);
}

TEST(diffusion_trainer, rejects_batches_of_the_wrong_shape) {
  diffusion_trainer a(tiny_dit::model(), {});
  auto batch = tiny_dit::fixed_batch(4);
  batch.height = 16;
  EXPECT_THROW(a.accumulate(batch), std::invalid_argument);
}

} // namespace
} // namespace ddactor
