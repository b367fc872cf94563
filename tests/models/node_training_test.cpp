// Trainers of one node as DDP replicas: N ranks with batch B each take the same steps as one
// trainer with batch N x B on the same data (to float tolerance: the gradient sums group
// differently), and stay bit-identical to each other; rank 0's state reaches every rank.
#include "models/node_training.hpp"

#include <gtest/gtest.h>

#include <functional>
#include <mutex>
#include <thread>

#include "models/diffusion_trainer.hpp"
#include "tests/models/run_ranks.hpp"
#include "tests/models/tiny_dit.hpp"

namespace ddactor {
namespace {

using namespace std::chrono_literals;

// The node's batch of a step: random images and labels, different at every step.
training_batch node_batch(int step, int64_t count) {
  auto batch = tiny_dit::fixed_batch(count);
  auto generator = at::make_generator<at::CPUGeneratorImpl>(1000 + step);
  auto images = at::rand({count * 64}, generator, torch::kFloat32) * 2 - 1;
  std::copy_n(images.data_ptr<float>(), count * 64, batch.images.begin());
  for (int64_t i = 0; i < count; ++i)
    batch.labels[static_cast<size_t>(i)] = (i * 7 + step) % 2;
  return batch;
}

// Rank `rank`'s part of a node batch, as the data loader cuts it.
training_batch slice_of(const training_batch& node, int rank, int64_t per_rank) {
  training_batch slice = node;
  slice.count = per_rank;
  const auto first = static_cast<size_t>(rank * per_rank);
  slice.images.assign(node.images.begin() + static_cast<int64_t>(first * 64),
                      node.images.begin() + static_cast<int64_t>((first + per_rank) * 64));
  slice.labels.assign(node.labels.begin() + static_cast<int64_t>(first),
                      node.labels.begin() + static_cast<int64_t>(first + per_rank));
  slice.node_offset = rank * per_rank;
  slice.node_count = node.count;
  return slice;
}

trainer_settings settings() {
  trainer_settings s;
  s.lr = 1e-3;
  s.warmup_steps = 2;
  s.seed = 5;
  s.noise_seed = 11;  // the same on every rank: draws for the node's batch line up
  return s;           // condition dropout stays on (0.1): it must line up too
}

class node_training_ranks : public ::testing::TestWithParam<int> {};

// Building a model seeds LibTorch's global generator and draws its weights from it: ranks build
// one at a time (as the trainer actors do), else their draws interleave and rank 0's weights,
// which every rank takes, are not those of the single trainer (seen under load).
std::unique_ptr<diffusion_trainer> build_trainer(const trainer_settings& s) {
  static std::mutex global_generator;
  std::lock_guard<std::mutex> lock(global_generator);
  return std::make_unique<diffusion_trainer>(tiny_dit::model(), s);
}

TEST_P(node_training_ranks, n_trainers_equal_one_trainer_with_n_times_the_batch) {
  const int ranks = GetParam();
  constexpr int64_t per_rank = 4;
  constexpr int steps = 6;
  diffusion_trainer single(tiny_dit::model(), settings());
  std::vector<double> single_losses;
  for (int step = 0; step < steps; ++step)
    single_losses.push_back(single.train_step(node_batch(step, ranks * per_rank)).loss);

  std::vector<std::unique_ptr<diffusion_trainer>> replicas(static_cast<size_t>(ranks));
  std::vector<double> node_losses;
  auto rendezvous = make_node_rendezvous();
  run_ranks(ranks, [&](int rank) {
    node_reducer reducer(rendezvous, {rank, ranks, 30s});
    auto trainer = build_trainer(settings());
    training_progress progress;
    share_training_state(reducer, *trainer, progress);
    for (int step = 0; step < steps; ++step) {
      trainer->accumulate(slice_of(node_batch(step, ranks * per_rank), rank, per_rank));
      sum_node_accumulation(reducer, *trainer);
      EXPECT_EQ(trainer->accumulated_samples(), ranks * per_rank);
      const auto result = trainer->apply_step();
      if (rank == 0)
        node_losses.push_back(result.loss);
    }
    replicas[static_cast<size_t>(rank)] = std::move(trainer);
  });

  auto& first = *replicas[0];
  EXPECT_EQ(first.step(), steps);
  EXPECT_TRUE(torch::allclose(first.parameters().values(), single.parameters().values(), 1e-4,
                              1e-5))
    << "largest difference "
    << (first.parameters().values() - single.parameters().values()).abs().max().item<float>();
  for (int step = 0; step < steps; ++step)
    EXPECT_NEAR(node_losses[static_cast<size_t>(step)], single_losses[static_cast<size_t>(step)],
                1e-5)
      << "step " << step;
  for (int rank = 1; rank < ranks; ++rank) {
    auto& other = *replicas[static_cast<size_t>(rank)];
    EXPECT_TRUE(torch::equal(other.parameters().values(), first.parameters().values()))
      << "rank " << rank;
    EXPECT_TRUE(torch::equal(other.ema_parameters().values(), first.ema_parameters().values()));
    EXPECT_TRUE(torch::equal(other.optimizer().exp_avg_sq(), first.optimizer().exp_avg_sq()));
    EXPECT_TRUE(torch::equal(other.rng_state(), first.rng_state()));
  }
}

INSTANTIATE_TEST_SUITE_P(ranks, node_training_ranks, ::testing::Values(1, 2, 3));

TEST(node_training, every_rank_starts_from_rank_0_s_state) {
  auto rendezvous = make_node_rendezvous();
  std::vector<std::unique_ptr<diffusion_trainer>> replicas(2);
  std::vector<training_progress> progresses(2);
  run_ranks(2, [&](int rank) {
    node_reducer reducer(rendezvous, {rank, 2, 30s});
    auto s = settings();
    s.seed = 20 + rank;  // different weights, as if each rank restored another checkpoint
    s.noise_seed = 30 + rank;
    auto trainer = build_trainer(s);
    for (int step = 0; step < 3 * (rank + 1); ++step)
      trainer->train_step(node_batch(step, 4));
    training_progress progress{trainer->step(), trainer->step(), rank, 40 * (rank + 1)};
    share_training_state(reducer, *trainer, progress);
    progresses[static_cast<size_t>(rank)] = progress;
    replicas[static_cast<size_t>(rank)] = std::move(trainer);
  });
  EXPECT_EQ(replicas[1]->step(), 3);
  EXPECT_EQ(replicas[1]->optimizer().step_count(), 3);
  EXPECT_EQ(progresses[1].step, 3);
  EXPECT_EQ(progresses[1].data_position, 40);
  EXPECT_TRUE(torch::equal(replicas[1]->parameters().values(), replicas[0]->parameters().values()));
  EXPECT_TRUE(
    torch::equal(replicas[1]->ema_parameters().values(), replicas[0]->ema_parameters().values()));
  EXPECT_TRUE(torch::equal(replicas[1]->optimizer().exp_avg(), replicas[0]->optimizer().exp_avg()));
  EXPECT_TRUE(torch::equal(replicas[1]->rng_state(), replicas[0]->rng_state()));
  // The next step of each is the same step.
  auto batch = node_batch(9, 4);
  EXPECT_EQ(replicas[0]->train_step(batch).loss, replicas[1]->train_step(batch).loss);
}

// DiLoCo on a node of two ranks: rank 0's anchor and outer momentum reach the other rank, and the
// same outer step from the same averaged pseudo-gradient then leaves both bit-identical.
TEST(node_training, every_rank_takes_rank_0_s_outer_state_and_steps_alike) {
  auto rendezvous = make_node_rendezvous();
  std::vector<torch::Tensor> parameters(2);
  std::vector<std::unique_ptr<outer_nesterov>> outers(2);
  run_ranks(2, [&](int rank) {
    node_reducer reducer(rendezvous, {rank, 2, 30s});
    auto generator = at::make_generator<at::CPUGeneratorImpl>(50 + rank);
    auto weights = at::rand({1000}, generator, torch::kFloat32);
    auto outer = std::make_unique<outer_nesterov>(weights, 0.7, 0.9);
    // A different history per rank, as if each restored another checkpoint.
    auto moved = weights - 0.01f * (rank + 1);
    auto delta = outer->pseudo_gradient(moved);
    outer->step(delta, weights);
    share_outer_state(reducer, *outer);
    weights.copy_(outer->anchor());
    auto averaged = at::rand({1000}, generator, torch::kFloat32);
    reducer.broadcast_(averaged, 0);  // the round's outcome, as rank 0 hands it on
    outer->step({averaged.data_ptr<float>(), 1000}, weights);
    parameters[static_cast<size_t>(rank)] = weights;
    outers[static_cast<size_t>(rank)] = std::move(outer);
  });
  EXPECT_TRUE(torch::equal(parameters[0], parameters[1]));
  EXPECT_TRUE(torch::equal(outers[0]->anchor(), outers[1]->anchor()));
  EXPECT_TRUE(torch::equal(outers[0]->momentum(), outers[1]->momentum()));
  EXPECT_GT(outers[0]->momentum().abs().sum().item<float>(), 0);
}

} // namespace
} // namespace ddactor
