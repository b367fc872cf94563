#include "models/shared_state.hpp"
#include "models/diffusion_trainer.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

namespace ddactor {
namespace {

dit_options tiny() {
  dit_options o;
  o.image_size = 8;
  o.patch_size = 4;
  o.hidden_size = 16;
  o.depth = 1;
  o.num_heads = 2;
  o.num_classes = 2;
  return o;
}

training_batch batch() {
  training_batch b;
  b.count = 4;
  b.channels = 1;
  b.height = b.width = 8;
  b.images.assign(4 * 64, -0.5f);
  b.labels = {0, 1, 0, 1};
  return b;
}

class shared_state_codecs : public ::testing::TestWithParam<std::string> {};

TEST_P(shared_state_codecs, round_trip_gives_the_same_state) {
  diffusion_trainer a(tiny(), {});
  for (int i = 0; i < 3; ++i)
    a.train_step(batch());
  auto bytes = encode_shared_state(a, 7, nullptr, GetParam());
  trainer_settings other;
  other.seed = 5;
  diffusion_trainer b(tiny(), other);
  EXPECT_EQ(restore_shared_state(bytes, b, nullptr), 7);
  EXPECT_EQ(b.step(), 3);
  EXPECT_EQ(b.optimizer().step_count(), 3);
  if (GetParam() == "none" || GetParam() == "zstd") {
    EXPECT_TRUE(torch::equal(a.parameters().values(), b.parameters().values()));
    EXPECT_TRUE(torch::equal(a.optimizer().exp_avg_sq(), b.optimizer().exp_avg_sq()));
  } else {
    EXPECT_TRUE(torch::allclose(a.parameters().values(), b.parameters().values(), 1e-2, 1e-2));
  }
}

INSTANTIATE_TEST_SUITE_P(all, shared_state_codecs,
                         ::testing::Values("none", "zstd", "fp16", "bf16"));

// A copy in memory (a round that may be discarded): after more steps, putting it back gives the
// very state it was taken from, counts included.
TEST(shared_state, a_copy_in_memory_goes_back_to_exactly_the_state_it_was_taken_from) {
  diffusion_trainer a(tiny(), {});
  a.train_step(batch());
  const auto before = encode_shared_state(a, 1, nullptr, "none");
  const auto copy = copy_shared_state(a, nullptr);
  EXPECT_GT(copy.bytes(), 0u);
  for (int i = 0; i < 2; ++i)
    a.train_step(batch());
  EXPECT_NE(encode_shared_state(a, 1, nullptr, "none"), before);
  restore_shared_state(copy, a, nullptr);
  EXPECT_EQ(encode_shared_state(a, 1, nullptr, "none"), before);
  EXPECT_EQ(a.step(), 1);
  diffusion_trainer other(dit_options{}, {});
  EXPECT_THROW(restore_shared_state(copy, other, nullptr), std::runtime_error);
}

TEST(shared_state, zstd_makes_it_smaller) {
  diffusion_trainer a(tiny(), {});
  // Zero-initialised layers and moments compress well.
  EXPECT_LT(encode_shared_state(a, 0, nullptr, "zstd").size(),
            encode_shared_state(a, 0, nullptr, "none").size());
}

TEST(shared_state, non_finite_or_foreign_state_is_refused_and_changes_nothing) {
  diffusion_trainer a(tiny(), {});
  a.train_step(batch());
  auto bytes = encode_shared_state(a, 1, nullptr, "none");
  // Poison one float of the first tensor's data (the end of the file is tensor data).
  auto poisoned = bytes;
  float nan = std::nanf("");
  std::memcpy(poisoned.data() + poisoned.size() - 4, &nan, 4);
  diffusion_trainer b(tiny(), {});
  auto before = b.parameters().values().clone();
  EXPECT_THROW(restore_shared_state(poisoned, b, nullptr), std::runtime_error);
  EXPECT_TRUE(torch::equal(before, b.parameters().values()));
  std::vector<char> garbage(100, 'x');
  EXPECT_THROW(restore_shared_state(garbage, b, nullptr), std::runtime_error);
  auto bigger = tiny();
  bigger.hidden_size = 32;
  diffusion_trainer c(bigger, {});
  EXPECT_THROW(restore_shared_state(bytes, c, nullptr), std::runtime_error);
}

TEST(shared_state, carries_the_outer_optimizer) {
  diffusion_trainer a(tiny(), {});
  outer_nesterov outer(a.parameters().values(), 0.7, 0.9);
  a.train_step(batch());
  auto params = a.parameters().values();
  outer.step(outer.pseudo_gradient(params), params);
  auto bytes = encode_shared_state(a, 2, &outer, "none");
  diffusion_trainer b(tiny(), {});
  outer_nesterov outer_b(b.parameters().values(), 0.7, 0.9);
  restore_shared_state(bytes, b, &outer_b);
  EXPECT_TRUE(torch::equal(outer.anchor(), outer_b.anchor()));
  EXPECT_TRUE(torch::equal(outer.momentum(), outer_b.momentum()));
}

// With top-k catch-up the counts are shared state: they travel exactly, even with halved floats,
// or a joiner would step differently from everyone else.
TEST(shared_state, catch_up_counts_travel_exactly) {
  for (const std::string compression : {"none", "bf16"}) {
    trainer_settings settings;
    settings.adamw.sparse_catch_up = true;
    diffusion_trainer a(tiny(), settings);
    a.train_step(batch());
    auto n = a.parameters().size();
    auto sparse = torch::zeros({n});
    sparse.index_put_({torch::indexing::Slice(0, n / 2)}, 0.01f);
    for (int i = 0; i < 300; ++i)
      a.apply_gradient(std::span<const float>(sparse.data_ptr<float>(), sparse.numel()));
    ASSERT_GE(a.optimizer().pending_rounds().max().item<float>(), 300.0f);
    diffusion_trainer b(tiny(), settings);
    restore_shared_state(encode_shared_state(a, 3, nullptr, compression), b, nullptr);
    EXPECT_TRUE(torch::equal(a.optimizer().pending_rounds(), b.optimizer().pending_rounds()))
      << compression;
  }
}

} // namespace
} // namespace ddactor
