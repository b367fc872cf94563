// data.micro_batch_size: a batch trained in micro-batches takes the steps the whole batch takes
// (to float rounding: the gradient sums group differently), with the same random draws per
// example, and leaves the loss's random stream where the whole batch leaves it; for the DiT, the
// DDM router and, with several trainers, for a node's slice of a batch.
#include <gtest/gtest.h>

#include <ATen/CPUGeneratorImpl.h>

#include "models/diffusion_trainer.hpp"
#include "models/router_trainer.hpp"
#include "runtime/training_batch_slice.hpp"
#include "tests/models/tiny_dit.hpp"
#include "tests/models/tiny_router.hpp"

namespace ddactor {
namespace {

trainer_settings settings(int64_t micro_batch_size) {
  trainer_settings s;
  s.lr = 1e-3;
  s.warmup_steps = 2;
  s.seed = 5;
  s.noise_seed = 11;  // condition dropout stays on (0.1): it must line up too
  s.micro_batch_size = micro_batch_size;
  return s;
}

// A batch of random images and labels, different at every step.
training_batch random_batch(int step, int64_t count) {
  auto batch = tiny_dit::fixed_batch(count);
  auto generator = at::make_generator<at::CPUGeneratorImpl>(1000 + step);
  auto images = at::rand({count * 64}, generator, torch::kFloat32) * 2 - 1;
  std::copy_n(images.data_ptr<float>(), count * 64, batch.images.begin());
  for (int64_t i = 0; i < count; ++i) {
    batch.labels[static_cast<size_t>(i)] = (i * 7 + step) % 2;
    batch.clusters.push_back((i * 3 + step) % 2);
  }
  return batch;
}

float largest_difference(const torch::Tensor& a, const torch::Tensor& b) {
  return (a - b).abs().max().item<float>();
}

class dit_micro_batches : public ::testing::TestWithParam<int64_t> {};

TEST_P(dit_micro_batches, take_the_steps_of_the_whole_batch) {
  constexpr int64_t batch_size = 8;
  constexpr int steps = 5;
  diffusion_trainer whole(tiny_dit::model(), settings(0));
  diffusion_trainer micro(tiny_dit::model(), settings(GetParam()));
  for (int step = 0; step < steps; ++step) {
    const auto batch = random_batch(step, batch_size);
    const auto a = whole.train_step(batch);
    const auto b = micro.train_step(batch);
    EXPECT_NEAR(a.loss, b.loss, 1e-5) << "step " << step;
    EXPECT_EQ(a.samples, b.samples);
    // The random stream moved as for the whole batch: the next step draws the same.
    EXPECT_TRUE(torch::equal(whole.rng_state(), micro.rng_state())) << "step " << step;
  }
  EXPECT_TRUE(torch::allclose(whole.parameters().values(), micro.parameters().values(), 1e-4,
                              1e-5))
    << "largest difference "
    << largest_difference(whole.parameters().values(), micro.parameters().values());
}

// 1: every example alone; 3: a short last micro-batch; 8: the whole batch in one.
INSTANTIATE_TEST_SUITE_P(sizes, dit_micro_batches, ::testing::Values(1, 3, 8));

TEST(micro_batches, of_a_node_slice_draw_as_the_slice_does) {
  // Rank 1 of 2 holds examples [4, 8) of a node batch of 8, in micro-batches of 3.
  const auto node = random_batch(0, 8);
  const auto slice = slice_of_batch(node, 4, 4);
  diffusion_trainer whole(tiny_dit::model(), settings(0));
  diffusion_trainer micro(tiny_dit::model(), settings(3));
  const double a = whole.accumulate(slice);
  const double b = micro.accumulate(slice);
  EXPECT_NEAR(a, b, 1e-6);
  EXPECT_TRUE(torch::allclose(whole.parameters().gradients(), micro.parameters().gradients(),
                              1e-4, 1e-6));
  EXPECT_TRUE(torch::equal(whole.rng_state(), micro.rng_state()));
}

TEST(micro_batches, the_router_takes_the_steps_of_the_whole_batch) {
  auto o = tiny_router::options();
  o.num_classes = 2;  // class dropout draws too
  router_trainer whole(o, settings(0));
  router_trainer micro(o, settings(2));
  for (int step = 0; step < 3; ++step) {
    const auto batch = random_batch(step, 6);
    EXPECT_NEAR(whole.train_step(batch).loss, micro.train_step(batch).loss, 1e-5);
  }
  EXPECT_TRUE(torch::allclose(whole.parameters().values(), micro.parameters().values(), 1e-4,
                              1e-5))
    << "largest difference "
    << largest_difference(whole.parameters().values(), micro.parameters().values());
}

} // namespace
} // namespace ddactor
