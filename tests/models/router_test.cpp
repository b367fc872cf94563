#include "models/router_trainer.hpp"

#include <gtest/gtest.h>

#include "tests/models/tiny_router.hpp"

namespace ddactor {
namespace {

TEST(router, starts_uniform_and_learns_which_cluster_an_image_is_from) {
  trainer_settings s;
  s.lr = 3e-3;
  s.warmup_steps = 0;
  router_trainer trainer(tiny_router::options(), s);
  auto p0 = trainer.model()->probabilities(torch::randn({3, 1, 8, 8}), torch::rand({3}));
  EXPECT_TRUE(torch::allclose(p0, torch::full_like(p0, 0.5f)));
  // Cluster 0: dark images; cluster 1: bright ones.
  training_batch b;
  b.count = 32;
  b.channels = 1;
  b.height = b.width = 8;
  for (int i = 0; i < 32; ++i) {
    b.clusters.push_back(i % 2);
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

// With class-pure clusters the image alone says nothing at t = 1 (pure noise), the class does:
// a class-conditioned router learns p(cluster | class) there, and the prior for the null class.
TEST(router, conditioned_on_the_class_it_routes_pure_noise_by_class) {
  auto o = tiny_router::options();
  o.num_classes = 3;
  trainer_settings s;
  s.lr = 3e-3;
  s.warmup_steps = 0;
  s.condition_dropout = 0.2;
  router_trainer trainer(o, s);
  // Classes 0 and 1 live in cluster 0, class 2 in cluster 1: the prior is 2/3 vs 1/3.
  training_batch b;
  b.count = 48;
  b.channels = 1;
  b.height = b.width = 8;
  for (int i = 0; i < 48; ++i) {
    b.labels.push_back(i % 3);
    b.clusters.push_back(i % 3 == 2 ? 1 : 0);
    for (int p = 0; p < 64; ++p)
      b.images.push_back(0.0f);
  }
  for (int i = 0; i < 200; ++i)
    trainer.train_step(b);
  torch::NoGradGuard g;
  auto x = torch::randn({4, 1, 8, 8});
  auto t = torch::ones({4});
  auto p = trainer.model()->probabilities(x, t, torch::tensor({0, 1, 2, 3}, torch::kInt64));
  EXPECT_GT(p[0][0].item<float>(), 0.9f);
  EXPECT_GT(p[1][0].item<float>(), 0.9f);
  EXPECT_GT(p[2][1].item<float>(), 0.9f);
  EXPECT_NEAR(p[3][0].item<float>(), 2.0f / 3.0f, 0.1f);  // null class: the prior
  // No labels at all means the null class.
  auto unconditioned = trainer.model()->probabilities(x, t);
  EXPECT_TRUE(torch::allclose(unconditioned[3], p[3], 1e-5, 1e-6));
  EXPECT_THROW(trainer.model()->probabilities(x, t, torch::tensor({0, 1, 2, 4}, torch::kInt64)),
               std::invalid_argument);
}

TEST(router, metadata_round_trips) {
  auto options = tiny_router::options();
  options.num_classes = 10;
  router_trainer trainer(options, {});
  auto o = router_options_of(trainer.describe());
  EXPECT_EQ(o.num_experts, 2);
  EXPECT_EQ(o.hidden_size, 16);
  EXPECT_EQ(o.num_classes, 10);
  EXPECT_THROW(router_options_of({{"model.kind", "dit"}}), std::runtime_error);
}

TEST(router, refuses_clusters_and_classes_out_of_range_or_missing) {
  auto options = tiny_router::options();
  options.num_classes = 3;
  router_trainer trainer(options, {});
  training_batch b;
  b.count = 1;
  b.channels = 1;
  b.height = b.width = 8;
  b.images.assign(64, 0.0f);
  b.labels = {0};
  EXPECT_THROW(trainer.accumulate(b), std::invalid_argument);  // no cluster
  b.clusters = {5};
  EXPECT_THROW(trainer.accumulate(b), std::invalid_argument);  // cluster out of range
  b.clusters = {1};
  b.labels = {3};
  EXPECT_THROW(trainer.accumulate(b), std::invalid_argument);  // class out of range
  b.labels = {};
  EXPECT_THROW(trainer.accumulate(b), std::invalid_argument);  // no class
  b.labels = {2};
  EXPECT_NO_THROW(trainer.accumulate(b));
}

} // namespace
} // namespace ddactor
