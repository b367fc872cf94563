// The validation loss: a function of the model and (seed, first N images) only, so two models
// compare; checked against the loss of an untrained DiT (which outputs exactly zero, so the loss
// is E|eps - x0|^2 = 1 + x0^2 for constant images), for batch-size independence, for which images
// it reads, and for its errors.
#include "models/validation_loss.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <string>

namespace ddactor {
namespace {

dit_options tiny_model(std::string conditioning = "class") {
  dit_options o;
  o.image_size = 16;
  o.in_channels = 1;
  o.patch_size = 4;
  o.hidden_size = 32;
  o.depth = 1;
  o.num_heads = 2;
  o.conditioning = std::move(conditioning);
  o.num_classes = 10;
  return o;
}

// `count` 16x16 grey images; image i has pixel value `value(i, pixel)`.
image_dataset make_images(int64_t count, uint8_t (*value)(int64_t, int64_t)) {
  image_dataset data;
  data.count = count;
  data.channels = 1;
  data.height = 16;
  data.width = 16;
  for (int64_t i = 0; i < count; ++i) {
    for (int64_t p = 0; p < 256; ++p)
      data.pixels.push_back(value(i, p));
    data.labels.push_back(i % 10);
  }
  return data;
}

uint8_t pattern(int64_t i, int64_t p) {
  return static_cast<uint8_t>((i * 37 + p * 11) % 256);
}

// A DiT whose output is not zero: every parameter nudged away from its (partly zero) init.
dit trained_looking_model(uint64_t seed) {
  torch::manual_seed(static_cast<int64_t>(seed));
  dit model(tiny_model());
  torch::NoGradGuard no_grad;
  for (auto& p : model->parameters())
    p.add_(torch::randn_like(p) * 0.05);
  return model;
}

TEST(validation_loss, untrained_dit_loss_is_noise_plus_signal_energy) {
  // x0 = 1 everywhere (pixel 255) and prediction 0: E(eps - 1)^2 = 2.
  auto data = make_images(64, [](int64_t, int64_t) -> uint8_t { return 255; });
  torch::manual_seed(0);
  dit model(tiny_model());
  double loss = validation_loss(model, data, {.images = 64, .batch_size = 16, .seed = 3});
  // 64 x 256 draws of (eps - 1)^2 (variance 6): standard error 0.02.
  EXPECT_NEAR(loss, 2.0, 0.1);
  // x0 = -1 + 2 * 128/255 ~ 0.0039: E eps^2 = 1.
  auto grey = make_images(64, [](int64_t, int64_t) -> uint8_t { return 128; });
  EXPECT_NEAR(validation_loss(model, grey, {.images = 64, .seed = 3}), 1.0, 0.06);
}

class validation_loss_batches : public ::testing::TestWithParam<int64_t> {};

TEST_P(validation_loss_batches, batch_size_does_not_change_the_result) {
  auto data = make_images(50, pattern);
  auto model = trained_looking_model(1);
  double reference = validation_loss(model, data, {.images = 50, .batch_size = 50, .seed = 9});
  double batched = validation_loss(model, data, {.images = 50, .batch_size = GetParam(), .seed = 9});
  EXPECT_NEAR(batched, reference, 1e-6 * reference);
  EXPECT_GT(reference, 0.0);
}

INSTANTIATE_TEST_SUITE_P(sizes, validation_loss_batches, ::testing::Values(1, 7, 16, 49, 1000));

TEST(validation_loss, same_inputs_give_the_same_loss_and_seeds_differ) {
  auto data = make_images(40, pattern);
  auto model = trained_looking_model(2);
  double a = validation_loss(model, data, {.images = 40, .seed = 5});
  // Global random state in between must not matter.
  torch::manual_seed(12345);
  (void)torch::randn({100});
  double b = validation_loss(model, data, {.images = 40, .seed = 5});
  EXPECT_EQ(a, b);
  double other_seed = validation_loss(model, data, {.images = 40, .seed = 6});
  EXPECT_NE(a, other_seed);
  // Different models, same inputs: different losses.
  auto other_model = trained_looking_model(3);
  EXPECT_NE(a, validation_loss(other_model, data, {.images = 40, .seed = 5}));
}

TEST(validation_loss, reads_only_the_first_n_images) {
  auto data = make_images(30, pattern);
  auto model = trained_looking_model(4);
  double first_20 = validation_loss(model, data, {.images = 20, .seed = 1});
  auto changed_tail = data;
  for (int64_t p = 0; p < 256; ++p)
    changed_tail.pixels[static_cast<size_t>(25 * 256 + p)] = 0;
  EXPECT_EQ(validation_loss(model, changed_tail, {.images = 20, .seed = 1}), first_20);
  auto changed_head = data;
  for (int64_t p = 0; p < 256; ++p)
    changed_head.pixels[static_cast<size_t>(p)] = 255;
  EXPECT_NE(validation_loss(model, changed_head, {.images = 20, .seed = 1}), first_20);
  // More images than the set holds: the whole set.
  EXPECT_EQ(validation_loss(model, data, {.images = 1000, .seed = 1}),
            validation_loss(model, data, {.images = 30, .seed = 1}));
}

TEST(validation_loss, uses_the_labels_and_leaves_the_training_mode_alone) {
  auto data = make_images(20, pattern);
  auto model = trained_looking_model(5);
  model->train();
  double loss = validation_loss(model, data, {.images = 20});
  EXPECT_TRUE(model->is_training());
  auto relabelled = data;
  for (auto& label : relabelled.labels)
    label = (label + 3) % 10;
  EXPECT_NE(validation_loss(model, relabelled, {.images = 20}), loss);
}

TEST(validation_loss, refuses_what_does_not_fit) {
  auto data = make_images(10, pattern);
  auto model = trained_looking_model(6);
  EXPECT_THROW(validation_loss(model, data, {.images = 0}), validation_loss_error);
  EXPECT_THROW(validation_loss(model, data, {.batch_size = 0}), validation_loss_error);
  EXPECT_THROW(validation_loss(model, image_dataset{}, {}), validation_loss_error);
  auto no_labels = data;
  no_labels.labels.clear();
  EXPECT_THROW(validation_loss(model, no_labels, {}), validation_loss_error);
  auto wrong_size = make_images(10, pattern);
  wrong_size.height = wrong_size.width = 8;
  wrong_size.pixels.resize(10 * 64);
  EXPECT_THROW(validation_loss(model, wrong_size, {}), validation_loss_error);
  dit unconditional(tiny_model("none"));
  EXPECT_NO_THROW(validation_loss(unconditional, no_labels, {.images = 10}));
}

} // namespace
} // namespace ddactor
