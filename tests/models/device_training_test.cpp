// Training on run.device: host/device copies (the CPU path is the GPU path with no copy), fp16
// loss scaling's skip-and-back-off on a real overflow, and, where a GPU is present, a step on
// the GPU against the same step on the CPU, bf16 and fp16 there, and two GPUs reduced with the
// node's collective. GPU tests skip without a CUDA device, never faked.
#include "models/device_transfer.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "models/diffusion_trainer.hpp"
#include "models/node_reducer.hpp"
#include "tests/models/run_ranks.hpp"
#include "tests/models/tiny_dit.hpp"

namespace ddactor {
namespace {

TEST(device_transfer, host_copies_are_copies_and_keep_the_values) {
  std::vector<float> values{1.5f, -2.0f, 3.25f};
  auto on_cpu = device_floats(values, torch::kCPU);
  values[0] = 9.0f;  // the tensor is a copy, not a view
  EXPECT_EQ(on_cpu[0].item<float>(), 1.5f);
  EXPECT_EQ(host_floats(on_cpu), (std::vector<float>{1.5f, -2.0f, 3.25f}));
  // A strided view comes back contiguous, in order.
  auto matrix = torch::arange(6, torch::kFloat32).view({2, 3}).t();
  EXPECT_TRUE(on_host(matrix).is_contiguous());
  EXPECT_EQ(host_floats(matrix), (std::vector<float>{0, 3, 1, 4, 2, 5}));
  // On the CPU a batch stays where it is: no copy.
  auto batch = torch::ones({4, 2});
  EXPECT_EQ(to_training_device(batch, torch::kCPU).data_ptr(), batch.data_ptr());
}

TEST(device_transfer, device_names_parse_or_name_the_key) {
  EXPECT_EQ(parse_training_device("cpu"), torch::Device(torch::kCPU));
  EXPECT_EQ(parse_training_device("cuda:1"), torch::Device(torch::kCUDA, 1));
  try {
    parse_training_device("gpu0");
    FAIL() << "accepted gpu0";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("run.device"), std::string::npos) << e.what();
  }
}

trainer_settings scaled_settings(bool loss_scaling) {
  trainer_settings s;
  s.lr = 1e-3;
  s.warmup_steps = 0;
  s.loss_scaling = loss_scaling;
  return s;
}

// The scale is a power of two: multiplying the loss by it and dividing the gradients by it are
// exact in floating point, so a scaled step equals the plain one bit for bit.
TEST(loss_scaling, a_finite_step_equals_the_unscaled_step_bit_for_bit) {
  diffusion_trainer plain(tiny_dit::model(), scaled_settings(false));
  diffusion_trainer scaled(tiny_dit::model(), scaled_settings(true));
  EXPECT_EQ(scaled.loss_scale(), 65536.0);
  const auto batch = tiny_dit::fixed_batch(8);
  for (int i = 0; i < 3; ++i) {
    const auto a = plain.train_step(batch);
    const auto b = scaled.train_step(batch);
    EXPECT_FALSE(b.skipped);
    EXPECT_EQ(a.loss, b.loss);
  }
  EXPECT_TRUE(torch::equal(plain.parameters().values(), scaled.parameters().values()));
  EXPECT_EQ(scaled.skipped_steps(), 0);
}

// An overflow (here a batch holding an infinity: its gradient is not finite, as an fp16
// gradient past 65504 is not) skips the step, changes nothing and halves the scale; the next
// good batch steps as usual.
TEST(loss_scaling, an_overflow_skips_the_step_and_backs_off) {
  diffusion_trainer trainer(tiny_dit::model(), scaled_settings(true));
  auto poisoned = tiny_dit::fixed_batch(4);
  poisoned.images[5] = std::numeric_limits<float>::infinity();
  const auto before = trainer.parameters().values().clone();
  const auto adam_before = trainer.optimizer().exp_avg().clone();
  const auto result = trainer.train_step(poisoned);
  EXPECT_TRUE(result.skipped);
  EXPECT_EQ(result.step, 0);
  EXPECT_TRUE(torch::equal(trainer.parameters().values(), before));
  EXPECT_TRUE(torch::equal(trainer.optimizer().exp_avg(), adam_before));
  EXPECT_EQ(trainer.loss_scale(), 32768.0);
  EXPECT_EQ(trainer.skipped_steps(), 1);
  EXPECT_EQ(trainer.accumulated_samples(), 0);
  const auto next = trainer.train_step(tiny_dit::fixed_batch(4));
  EXPECT_FALSE(next.skipped);
  EXPECT_EQ(next.step, 1);
  EXPECT_TRUE(std::isfinite(trainer.parameters().values().sum().item<double>()));
}

// In a swarm: a peer whose gradient overflowed sends zeros (never inf, which peers refuse as
// poison; its peer weighs them as almost nothing) and backs off; an average that is not finite,
// or all zero (everyone overflowed), is skipped by every peer alike.
TEST(loss_scaling, swarm_gradients_stay_finite_and_a_bad_average_is_skipped_by_all) {
  diffusion_trainer a(tiny_dit::model(), scaled_settings(true));
  diffusion_trainer b(tiny_dit::model(), scaled_settings(true));
  auto poisoned = tiny_dit::fixed_batch(4);
  poisoned.images[0] = std::numeric_limits<float>::infinity();
  a.accumulate(poisoned);
  const auto sent = a.take_mean_gradient();
  EXPECT_TRUE(std::all_of(sent.begin(), sent.end(), [](float g) { return g == 0.0f; }));
  EXPECT_TRUE(a.gradient_overflowed());
  EXPECT_EQ(a.loss_scale(), 32768.0);
  // Every member overflowed: the average is all zeros, skipped too (no momentum-only step).
  EXPECT_TRUE(b.apply_gradient(sent).skipped);
  b.accumulate(tiny_dit::fixed_batch(4));
  b.take_mean_gradient();
  EXPECT_FALSE(b.gradient_overflowed());  // a finite gradient weighs its samples
  auto average = sent;
  average[3] = std::numeric_limits<float>::quiet_NaN();
  const auto before = a.parameters().values().clone();
  EXPECT_TRUE(a.apply_gradient(average).skipped);
  EXPECT_TRUE(b.apply_gradient(average).skipped);
  EXPECT_TRUE(torch::equal(a.parameters().values(), before));
  EXPECT_TRUE(torch::equal(a.parameters().values(), b.parameters().values()));
  EXPECT_EQ(a.step(), 0);
  EXPECT_EQ(b.skipped_steps(), 2);
}

// --- on a GPU ---------------------------------------------------------------------------------

bool has_cuda(int devices = 1) {
  return torch::cuda::is_available() &&
         static_cast<int>(torch::cuda::device_count()) >= devices;
}

trainer_settings on(const char* device, training_precision precision) {
  auto s = scaled_settings(precision == training_precision::fp16);
  s.device = torch::Device(device);
  s.precision = precision;
  return s;
}

// The same seeds draw the same noise on the host whatever the device: the GPU's step is the
// CPU's to float rounding (different kernels sum in other orders).
TEST(cuda_training, a_step_on_the_gpu_matches_the_cpu) {
  if (!has_cuda())
    GTEST_SKIP() << "no CUDA device";
  diffusion_trainer cpu(tiny_dit::model(), on("cpu", training_precision::fp32));
  diffusion_trainer gpu(tiny_dit::model(), on("cuda:0", training_precision::fp32));
  EXPECT_TRUE(gpu.parameters().values().is_cuda());
  EXPECT_TRUE(gpu.optimizer().exp_avg().is_cuda());
  EXPECT_TRUE(gpu.ema_parameters().values().is_cuda());
  const auto batch = tiny_dit::fixed_batch(8);
  for (int i = 0; i < 3; ++i) {
    const auto a = cpu.train_step(batch);
    const auto b = gpu.train_step(batch);
    EXPECT_NEAR(a.loss, b.loss, 1e-4 * std::abs(a.loss));
  }
  const auto difference =
    (cpu.parameters().values() - gpu.parameters().values().cpu()).abs().max().item<double>();
  EXPECT_LT(difference, 1e-4);
  // What goes to the network comes back to the host.
  gpu.accumulate(batch);
  EXPECT_EQ(gpu.take_mean_gradient().size(), static_cast<size_t>(gpu.parameters().size()));
}

TEST(cuda_training, bf16_and_fp16_learn_on_the_gpu_with_fp32_weights) {
  if (!has_cuda())
    GTEST_SKIP() << "no CUDA device";
  for (auto precision : {training_precision::bf16, training_precision::fp16}) {
    diffusion_trainer trainer(tiny_dit::model(), on("cuda:0", precision));
    const auto batch = tiny_dit::fixed_batch(32);
    double first = 0, last = 0;
    for (int i = 0; i < 5; ++i)
      first += trainer.train_step(batch).loss / 5;
    for (int i = 0; i < 100; ++i)
      trainer.train_step(batch);
    for (int i = 0; i < 5; ++i)
      last += trainer.train_step(batch).loss / 5;
    EXPECT_LT(last, first * 0.8) << to_string(precision);
    EXPECT_EQ(trainer.parameters().values().scalar_type(), torch::kFloat32);
  }
}

TEST(cuda_training, two_gpus_sum_with_the_node_collective) {
  if (!has_cuda(2))
    GTEST_SKIP() << "fewer than two CUDA devices";
  const auto rendezvous = make_node_rendezvous();
  run_ranks(2, [&](int rank) {
    node_reducer reducer(rendezvous, node_reducer_options{rank, 2});
    auto t = torch::full({1000}, static_cast<float>(rank + 1),
                         torch::TensorOptions().device(torch::Device(torch::kCUDA, rank)));
    reducer.sum_(t);
    EXPECT_TRUE(t.is_cuda());
    EXPECT_EQ(t.cpu().eq(3.0f).all().item<bool>(), true);
  });
}

} // namespace
} // namespace ddactor
