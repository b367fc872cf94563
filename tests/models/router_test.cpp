#include "models/router_trainer.hpp"

#include <gtest/gtest.h>

namespace ddactor {
namespace {

router_options tiny() {
  router_options o;
  o.image_size = 8;
  o.patch_size = 4;
  o.hidden_size = 16;
  o.depth = 1;
  o.num_heads = 2;
  o.num_experts = 2;
  return o;
}

TEST(router, starts_uniform_and_learns_which_cluster_an_image_is_from) {
  trainer_settings s;
  s.lr = 3e-3;
  s.warmup_steps = 0;
  router_trainer trainer(tiny(), s);
  auto p0 = trainer.model()->probabilities(torch::randn({3, 1, 8, 8}), torch::rand({3}));
  EXPECT_TRUE(torch::allclose(p0, torch::full_like(p0, 0.5f)));
  // Cluster 0: dark images; cluster 1: bright ones.
  training_batch b;
  b.count = 32;
  b.channels = 1;
  b.height = b.width = 8;
  for (int i = 0; i < 32; ++i) {
    b.labels.push_back(i % 2);
    for (int p = 0; p < 64; ++p)
      b.images.push_back(i % 2 == 0 ? -0.9f : 0.9f);
  }
  for (int i = 0; i < 150; ++i)
    trainer.train_step(b);
  torch::NoGradGuard g;
  auto x = torch::cat({torch::full({1, 1, 8, 8}, -0.9f), torch::full({1, 1, 8, 8}, 0.9f)});
  auto p = trainer.model()->probabilities(x, torch::full({2}, 0.1f));
  EXPECT_GT(p[0][0].item<float>(), 0.8f);
  EXPECT_GT(p[1][1].item<float>(), 0.8f);
}

TEST(router, metadata_round_trips) {
  router_trainer trainer(tiny(), {});
  auto o = router_options_of(trainer.describe());
  EXPECT_EQ(o.num_experts, 2);
  EXPECT_EQ(o.hidden_size, 16);
  EXPECT_THROW(router_options_of({{"model.kind", "dit"}}), std::runtime_error);
}

TEST(router, refuses_labels_outside_the_clusters) {
  router_trainer trainer(tiny(), {});
  training_batch b;
  b.count = 1;
  b.channels = 1;
  b.height = b.width = 8;
  b.images.assign(64, 0.0f);
  b.labels = {5};
  EXPECT_THROW(trainer.accumulate(b), std::invalid_argument);
}

} // namespace
} // namespace ddactor
