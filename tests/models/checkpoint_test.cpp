#include "models/checkpoint.hpp"
#include "models/diffusion_trainer.hpp"

#include <gtest/gtest.h>

namespace ddactor {
namespace {

dit_options tiny_model() {
  dit_options o;
  o.image_size = 8;
  o.patch_size = 4;
  o.hidden_size = 16;
  o.depth = 1;
  o.num_heads = 2;
  o.num_classes = 3;
  return o;
}

training_batch small_batch() {
  training_batch b;
  b.count = 4;
  b.channels = 1;
  b.height = b.width = 8;
  b.images.assign(4 * 64, 0.25f);
  b.labels = {0, 1, 2, 0};
  return b;
}

TEST(checkpoint, round_trip_restores_every_piece_of_state) {
  diffusion_trainer a(tiny_model(), {});
  for (int i = 0; i < 3; ++i)
    a.train_step(small_batch());
  auto snapshot = snapshot_training_state(a, {3, 3, 2, 17});
  auto bytes = encode_safetensors(*snapshot);
  auto decoded = decode_safetensors(bytes);

  trainer_settings other;
  other.seed = 99;
  diffusion_trainer b(tiny_model(), other);
  auto progress = restore_training_state(decoded, b);
  EXPECT_EQ(progress.step, 3);
  EXPECT_EQ(progress.data_epoch, 2);
  EXPECT_EQ(progress.data_position, 17);
  EXPECT_EQ(b.step(), 3);
  EXPECT_EQ(b.optimizer().step_count(), 3);
  EXPECT_TRUE(torch::equal(a.parameters().values(), b.parameters().values()));
  EXPECT_TRUE(torch::equal(a.ema_parameters().values(), b.ema_parameters().values()));
  EXPECT_TRUE(torch::equal(a.optimizer().exp_avg(), b.optimizer().exp_avg()));
  EXPECT_TRUE(torch::equal(a.optimizer().exp_avg_sq(), b.optimizer().exp_avg_sq()));
  // Same state, same random stream: the next steps are identical.
  auto ra = a.train_step(small_batch());
  auto rb = b.train_step(small_batch());
  EXPECT_EQ(ra.loss, rb.loss);
  EXPECT_TRUE(torch::equal(a.parameters().values(), b.parameters().values()));
}

// Top-k catch-up counts are part of the state; a checkpoint written without them (another codec)
// restores with zero counts.
TEST(checkpoint, catch_up_counts_round_trip_and_default_to_zero) {
  trainer_settings settings;
  settings.adamw.sparse_catch_up = true;
  diffusion_trainer a(tiny_model(), settings);
  a.train_step(small_batch());
  std::vector<float> sparse(static_cast<size_t>(a.parameters().size()), 0.0f);
  sparse[0] = 0.5f;
  for (int i = 0; i < 5; ++i)
    a.apply_gradient(sparse);
  ASSERT_GE(a.optimizer().pending_rounds()[1].item<float>(), 5.0f);
  diffusion_trainer b(tiny_model(), settings);
  restore_training_state(decode_safetensors(encode_safetensors(*snapshot_training_state(a, {}))),
                         b);
  EXPECT_TRUE(torch::equal(a.optimizer().pending_rounds(), b.optimizer().pending_rounds()));

  diffusion_trainer plain(tiny_model(), {});
  plain.train_step(small_batch());
  restore_training_state(
    decode_safetensors(encode_safetensors(*snapshot_training_state(plain, {}))), b);
  EXPECT_EQ(b.optimizer().pending_rounds().abs().sum().item<float>(), 0.0f);
}

TEST(checkpoint, names_are_readable_per_parameter) {
  diffusion_trainer a(tiny_model(), {});
  auto snapshot = snapshot_training_state(a, {});
  EXPECT_NE(snapshot->find("model.blocks.0.attn.qkv.weight"), nullptr);
  EXPECT_NE(snapshot->find("ema.label_embedder.weight"), nullptr);
  EXPECT_EQ(snapshot->metadata.at("model.hidden_size"), "16");
  auto options = model_options_of(*snapshot);
  EXPECT_EQ(options.hidden_size, 16);
  EXPECT_EQ(options.num_classes, 3);
}

TEST(checkpoint, a_model_of_another_shape_is_refused_and_left_untouched) {
  diffusion_trainer a(tiny_model(), {});
  auto snapshot = snapshot_training_state(a, {5, 5, 0, 0});
  auto bigger = tiny_model();
  bigger.hidden_size = 32;
  diffusion_trainer b(bigger, {});
  auto before = b.parameters().values().clone();
  EXPECT_THROW(restore_training_state(*snapshot, b), checkpoint_error);
  EXPECT_TRUE(torch::equal(before, b.parameters().values()));
  EXPECT_EQ(b.step(), 0);
}

TEST(checkpoint, missing_tensor_or_metadata_is_a_clear_error) {
  diffusion_trainer a(tiny_model(), {});
  auto snapshot = *snapshot_training_state(a, {});
  auto no_tensor = snapshot;
  no_tensor.tensors.pop_back();
  try {
    restore_training_state(no_tensor, a);
    FAIL();
  } catch (const checkpoint_error& e) {
    EXPECT_NE(std::string(e.what()).find("trainer.rng_state"), std::string::npos) << e.what();
  }
  auto no_step = snapshot;
  no_step.metadata.erase("step");
  EXPECT_THROW(restore_training_state(no_step, a), checkpoint_error);
  auto bad_step = snapshot;
  bad_step.metadata["step"] = "12abc";
  EXPECT_THROW(restore_training_state(bad_step, a), checkpoint_error);
  auto foreign = snapshot;
  foreign.metadata.erase("format");
  EXPECT_THROW(restore_training_state(foreign, a), checkpoint_error);
}

TEST(checkpoint, ema_weights_load_into_a_sampling_model) {
  diffusion_trainer a(tiny_model(), {});
  for (int i = 0; i < 3; ++i)
    a.train_step(small_batch());
  auto snapshot = snapshot_training_state(a, {});
  dit model(model_options_of(*snapshot));
  load_weights(*snapshot, model, /*use_ema=*/true);
  auto x = torch::randn({2, 1, 8, 8});
  dit_condition cond;
  cond.labels = torch::tensor({0, 1}, torch::kInt64);
  torch::NoGradGuard g;
  EXPECT_TRUE(torch::equal(model->forward(x, torch::full({2}, 0.5), cond),
                           a.ema_model()->forward(x, torch::full({2}, 0.5), cond)));
}

} // namespace
} // namespace ddactor
