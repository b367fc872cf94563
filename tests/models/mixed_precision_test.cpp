// Mixed precision: autocast_scope switches LibTorch's autocast on and back (nested too), and a
// DiT trained in bf16 keeps fp32 weights, learns like fp32, and is deterministic, so that peers
// of a swarm applying the same averaged gradients stay bit-identical.
#include "models/mixed_precision.hpp"

#include <gtest/gtest.h>

#include "tests/models/tiny_dit.hpp"

#include "models/diffusion_trainer.hpp"

namespace ddactor {
namespace {

TEST(mixed_precision, precisions_parse_and_print) {
  for (auto p : {training_precision::fp32, training_precision::bf16, training_precision::fp16})
    EXPECT_EQ(parse_training_precision(to_string(p)), p);
  EXPECT_THROW(parse_training_precision("fp8"), std::invalid_argument);
  EXPECT_TRUE(autocast_supported(training_precision::bf16, c10::DeviceType::CPU));
  EXPECT_FALSE(autocast_supported(training_precision::fp16, c10::DeviceType::CPU));
}

TEST(mixed_precision, autocast_is_on_inside_the_scope_only_and_nests) {
  auto a = torch::randn({4, 4});
  auto b = torch::randn({4, 4});
  EXPECT_EQ(torch::mm(a, b).scalar_type(), torch::kFloat32);
  {
    autocast_scope outer(training_precision::bf16, c10::DeviceType::CPU);
    EXPECT_EQ(torch::mm(a, b).scalar_type(), torch::kBFloat16);
    {
      autocast_scope inner(training_precision::fp32, c10::DeviceType::CPU);  // changes nothing
      EXPECT_EQ(torch::mm(a, b).scalar_type(), torch::kBFloat16);
    }
    {
      autocast_scope inner(training_precision::bf16, c10::DeviceType::CPU);
      EXPECT_EQ(torch::mm(a, b).scalar_type(), torch::kBFloat16);
    }
    EXPECT_EQ(torch::mm(a, b).scalar_type(), torch::kBFloat16);  // the inner one restored it
  }
  EXPECT_EQ(torch::mm(a, b).scalar_type(), torch::kFloat32);
  EXPECT_THROW(autocast_scope(training_precision::fp16, c10::DeviceType::CPU),
               std::invalid_argument);
  EXPECT_EQ(torch::mm(a, b).scalar_type(), torch::kFloat32);
}


trainer_settings settings_in(training_precision precision) {
  trainer_settings s;
  s.lr = 3e-3;
  s.warmup_steps = 0;
  s.precision = precision;
  return s;
}

TEST(mixed_precision, a_bf16_gradient_is_close_to_the_fp32_one_and_weights_stay_fp32) {
  diffusion_trainer full(tiny_dit::model(), settings_in(training_precision::fp32));
  diffusion_trainer half(tiny_dit::model(), settings_in(training_precision::bf16));
  auto batch = tiny_dit::fixed_batch(16);
  full.accumulate(batch);
  half.accumulate(batch);
  const auto g_full = full.parameters().gradients();
  const auto g_half = half.parameters().gradients();
  EXPECT_EQ(g_half.scalar_type(), torch::kFloat32);
  EXPECT_FALSE(torch::equal(g_full, g_half));  // bf16 really computed something else
  const double relative = ((g_half - g_full).norm() / g_full.norm()).item<double>();
  EXPECT_LT(relative, 0.05);
  half.apply_step();
  EXPECT_EQ(half.parameters().values().scalar_type(), torch::kFloat32);
}

TEST(mixed_precision, bf16_learns_like_fp32_and_repeats_bit_for_bit) {
  auto batch = tiny_dit::fixed_batch(32);
  auto train = [&](training_precision precision) {
    auto trainer = std::make_unique<diffusion_trainer>(tiny_dit::model(), settings_in(precision));
    double first = 0, last = 0;
    for (int i = 0; i < 5; ++i)
      first += trainer->train_step(batch).loss / 5;
    for (int i = 0; i < 100; ++i)
      trainer->train_step(batch);
    for (int i = 0; i < 5; ++i)
      last += trainer->train_step(batch).loss / 5;
    return std::tuple{std::move(trainer), first, last};
  };
  auto [fp32, fp32_first, fp32_last] = train(training_precision::fp32);
  auto [bf16, bf16_first, bf16_last] = train(training_precision::bf16);
  auto [again, again_first, again_last] = train(training_precision::bf16);
  EXPECT_LT(bf16_last, bf16_first * 0.7) << bf16_first << " -> " << bf16_last;
  EXPECT_LT(bf16_last, fp32_last * 1.15) << "bf16 " << bf16_last << ", fp32 " << fp32_last;
  EXPECT_TRUE(torch::equal(bf16->parameters().values(), again->parameters().values()));
  EXPECT_EQ(bf16_last, again_last);
}

} // namespace
} // namespace ddactor
