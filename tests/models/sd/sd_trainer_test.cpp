// Stable Diffusion fine-tuning on the tiny fixture pipeline (real diffusers weights of a tiny
// UNet, VAE and CLIP text encoder): the DDPM loss falls on a fixed batch, full and LoRA; LoRA
// changes only the adapters and starts as the base model (B = 0), its gradients survive
// activation checkpointing, and its file has diffusers' key form and reads back; cached latents
// and embeddings give the loss the images and captions give; the EMA can be switched off.
#include "models/sd/sd_trainer.hpp"

#include <gtest/gtest.h>

#include "models/sd/lora_file.hpp"
#include "runtime/safetensors.hpp"
#include "tests/models/sd/tiny_sd_folder.hpp"
#include "tests/temporary_folder.hpp"

namespace ddactor {
namespace {

namespace fs = std::filesystem;

class sd_trainer_test : public ::testing::Test {
 protected:
  void SetUp() override {
    if (tiny_sd::missing_fixtures().empty())
      tiny_sd::assemble(root_ / "pipeline");
  }

  sd_trainer_options options(int64_t lora_rank = 0) const {
    sd_trainer_options o;
    o.pretrained = root_ / "pipeline";
    o.lora.rank = lora_rank;
    o.lora.alpha = 4.0;
    return o;
  }

  static trainer_settings settings(double lr = 1e-3, double ema_decay = 0.999) {
    trainer_settings s;
    s.lr = lr;
    s.warmup_steps = 0;
    s.ema_decay = ema_decay;
    s.seed = 7;
    s.noise_seed = 11;
    return s;
  }

  // Two 32 x 32 RGB images (latents 16 x 16 with the tiny VAE) with captions.
  static training_batch image_batch() {
    training_batch b;
    b.count = 2;
    b.channels = 3;
    b.height = b.width = 32;
    b.images.resize(static_cast<size_t>(2 * 3 * 32 * 32));
    for (size_t i = 0; i < b.images.size(); ++i)
      b.images[i] = static_cast<float>(((i * 37) % 101) / 50.0 - 1.0);
    b.captions = {"a red dress", "a cat on a mat"};
    return b;
  }

  // The loss of `batch` with the trainer's random stream at `state` (nothing is trained).
  static double loss_at(sd_trainer& trainer, const training_batch& batch,
                        const torch::Tensor& state) {
    trainer.set_rng_state(state);
    const double loss = trainer.accumulate(batch);
    trainer.discard_accumulation();
    return loss;
  }

  testing::temporary_folder folder_{"ddactor_sd_trainer"};
  const fs::path root_ = folder_.path();
};

TEST_F(sd_trainer_test, full_fine_tune_lowers_the_loss_on_a_fixed_batch) {
  SKIP_WITHOUT_TINY_SD();
  sd_trainer trainer(options(), settings(1e-3));
  const auto batch = image_batch();
  const auto state = trainer.rng_state();
  const double before = loss_at(trainer, batch, state);
  for (int i = 0; i < 30; ++i)
    ASSERT_TRUE(std::isfinite(trainer.train_step(batch).loss));
  const double after = loss_at(trainer, batch, state);
  EXPECT_LT(after, 0.8 * before) << "before " << before << " after " << after;
  // The flat parameters are the whole UNet's, and nothing else.
  int64_t unet_parameters = 0;
  for (const auto& p : trainer.unet()->parameters())
    unet_parameters += p.numel();
  EXPECT_EQ(trainer.parameters().size(), unet_parameters);
  EXPECT_TRUE(trainer.has_ema());
}

TEST_F(sd_trainer_test, lora_trains_only_the_adapters_and_lowers_the_loss) {
  SKIP_WITHOUT_TINY_SD();
  sd_trainer trainer(options(4), settings(3e-3));
  std::vector<std::pair<std::string, torch::Tensor>> base;
  for (const auto& item : trainer.unet()->named_parameters())
    if (item.key().find(".lora.") == std::string::npos)
      base.emplace_back(item.key(), item.value().clone());
  const auto batch = image_batch();
  const auto state = trainer.rng_state();
  const double before = loss_at(trainer, batch, state);
  for (int i = 0; i < 40; ++i)
    trainer.train_step(batch);
  const double after = loss_at(trainer, batch, state);
  EXPECT_LT(after, before) << "before " << before << " after " << after;

  for (const auto& [name, value] : base)
    EXPECT_TRUE(torch::equal(trainer.unet()->named_parameters()[name], value))
      << name << " changed";
  // Adapters on every attention projection of the tiny UNet's transformer blocks (4 blocks: one
  // down, one mid, two up; x 2 attentions x 4 projections), each rank x in and out x rank.
  const auto& adapters = *trainer.adapters();
  EXPECT_EQ(adapters.sites().size(), 32u);
  int64_t expected_size = 0;
  for (const auto& site : adapters.sites())
    expected_size += 4 * (site.in_features + site.out_features);
  EXPECT_EQ(trainer.parameters().size(), expected_size);
  bool any_up_moved = false;
  for (const auto& adapter : adapters.adapters())
    any_up_moved = any_up_moved || adapter->up->weight.abs().max().item<float>() > 0;
  EXPECT_TRUE(any_up_moved);
}

TEST_F(sd_trainer_test, fresh_adapters_leave_the_output_unchanged) {
  SKIP_WITHOUT_TINY_SD();
  auto pipeline = load_sd_pipeline(root_ / "pipeline");
  torch::NoGradGuard no_grad;
  torch::manual_seed(3);
  const auto sample = torch::randn({2, 4, 16, 16});
  const auto t = torch::tensor({10, 500}, torch::kInt64);
  const auto text = torch::randn({2, 77, 32});
  const auto base = pipeline.unet->forward(sample, t, text);
  auto sites = find_adapter_sites(*pipeline.unet, default_lora_targets());
  low_rank_adapters adapters(sites, 8, 8.0);
  adapters->attach_to(*pipeline.unet);
  EXPECT_TRUE(torch::equal(pipeline.unet->forward(sample, t, text), base));
  // A is drawn as PEFT draws it, U(-1/sqrt(in), 1/sqrt(in)); B is zero.
  for (size_t i = 0; i < sites.size(); ++i) {
    const auto bound = 1.0 / std::sqrt(static_cast<double>(sites[i].in_features));
    EXPECT_LE(adapters->adapters()[i]->down->weight.abs().max().item<double>(), bound);
    EXPECT_EQ(adapters->adapters()[i]->up->weight.abs().max().item<float>(), 0.0f);
  }
  adapters->detach_from(*pipeline.unet);
  EXPECT_TRUE(torch::equal(pipeline.unet->forward(sample, t, text), base));
}

TEST_F(sd_trainer_test, an_unknown_lora_target_is_refused_by_name) {
  SKIP_WITHOUT_TINY_SD();
  auto o = options(4);
  o.lora.targets = {"to_q", "to_qq"};
  try {
    sd_trainer trainer(o, settings());
    FAIL() << "no error";
  } catch (const std::runtime_error& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("train.lora_targets"), std::string::npos) << message;
    EXPECT_NE(message.find("\"to_qq\""), std::string::npos) << message;
  }
}

TEST_F(sd_trainer_test, lora_gradients_are_the_same_with_activation_checkpointing) {
  SKIP_WITHOUT_TINY_SD();
  auto plain_options = options(4);
  auto checkpointed_options = options(4);
  checkpointed_options.checkpoint_activations = true;
  sd_trainer plain(plain_options, settings());
  sd_trainer checkpointed(checkpointed_options, settings());
  // Give B non-zero values so that A gets gradients too.
  torch::manual_seed(5);
  const auto values = torch::randn({plain.parameters().size()}) * 0.01;
  plain.set_parameters({values.data_ptr<float>(), static_cast<size_t>(values.numel())});
  checkpointed.set_parameters({values.data_ptr<float>(), static_cast<size_t>(values.numel())});
  const auto batch = image_batch();
  plain.accumulate(batch);
  checkpointed.accumulate(batch);
  const auto& g = plain.parameters().gradients();
  EXPECT_GT(g.abs().max().item<float>(), 0.0f);
  EXPECT_TRUE(torch::allclose(checkpointed.parameters().gradients(), g, 1e-4, 1e-6))
    << (checkpointed.parameters().gradients() - g).abs().max().item<float>();
}

// data.micro_batch_size: one image at a time gives the gradients of both at once (the noise,
// offset noise, timestep and caption dropout of each image drawn as for the whole batch).
TEST_F(sd_trainer_test, micro_batches_give_the_gradients_of_the_whole_batch) {
  SKIP_WITHOUT_TINY_SD();
  auto s = settings();
  auto o = options();
  o.offset_noise = 0.1;
  o.caption_dropout = 0.5;
  sd_trainer whole(o, s);
  s.micro_batch_size = 1;
  sd_trainer micro(o, s);
  const auto batch = image_batch();
  EXPECT_NEAR(whole.accumulate(batch), micro.accumulate(batch), 1e-5);
  const auto& g = whole.parameters().gradients();
  EXPECT_GT(g.abs().max().item<float>(), 0.0f);
  EXPECT_TRUE(torch::allclose(micro.parameters().gradients(), g, 1e-4, 1e-6))
    << (micro.parameters().gradients() - g).abs().max().item<float>();
  EXPECT_TRUE(torch::equal(whole.rng_state(), micro.rng_state()));
}

TEST_F(sd_trainer_test, lora_file_has_diffusers_keys_and_reads_back) {
  SKIP_WITHOUT_TINY_SD();
  sd_trainer trainer(options(4), settings(3e-3, 0.0));
  const auto batch = image_batch();
  for (int i = 0; i < 3; ++i)
    trainer.train_step(batch);
  trainer.write_exports(root_, model_trainer::export_moment::checkpoint);
  const auto file = root_ / "lora.safetensors";
  const auto content = read_safetensors_file(file);
  EXPECT_EQ(content.metadata.at("format"), "pt");
  EXPECT_EQ(content.tensors.size(), 64u);
  for (const auto& t : content.tensors) {
    EXPECT_TRUE(t.name.starts_with("unet.")) << t.name;
    EXPECT_TRUE(t.name.ends_with(".lora.down.weight") || t.name.ends_with(".lora.up.weight"))
      << t.name;
  }
  const auto* up = content.find(
    "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora.up.weight");
  const auto* down = content.find(
    "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora.down.weight");
  ASSERT_NE(up, nullptr);
  ASSERT_NE(down, nullptr);
  EXPECT_EQ(down->shape, (std::vector<int64_t>{4, 32}));
  EXPECT_EQ(up->shape, (std::vector<int64_t>{32, 4}));
  ASSERT_NE(content.find("unet.up_blocks.1.attentions.0.transformer_blocks.0.attn2.to_out.0."
                         "lora.up.weight"),
            nullptr);

  // Read into adapters of another alpha: the scale the file carries is undone and theirs applied.
  low_rank_adapters read_back(trainer.adapters()->sites(), 4, 8.0);
  load_lora_file(file, *read_back);
  for (size_t i = 0; i < read_back->adapters().size(); ++i) {
    const auto& a = trainer.adapters()->adapters()[i];
    const auto& b = read_back->adapters()[i];
    EXPECT_TRUE(torch::equal(a->down->weight, b->down->weight));
    const auto delta_a = torch::matmul(a->up->weight, a->down->weight) * a->scale();
    const auto delta_b = torch::matmul(b->up->weight, b->down->weight) * b->scale();
    EXPECT_TRUE(torch::allclose(delta_a, delta_b, 1e-6, 1e-9));
  }
  // The file's "up" is B * scale, which diffusers adds as it is.
  const auto& first = trainer.adapters()->adapters()[0];
  const auto stored_up = torch::from_blob(const_cast<std::byte*>(content.find(lora_file_key(
                                            trainer.adapters()->sites()[0].path, true))
                                                                   ->data.data()),
                                          first->up->weight.sizes(), torch::kFloat32);
  EXPECT_TRUE(torch::allclose(stored_up, first->up->weight * first->scale()));

  // Adapters of another rank do not fit: the error names the file and a key.
  low_rank_adapters other_rank(trainer.adapters()->sites(), 2, 8.0);
  try {
    load_lora_file(file, *other_rank);
    FAIL() << "no error";
  } catch (const std::runtime_error& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find(file.string()), std::string::npos) << message;
    EXPECT_NE(message.find(".lora.down.weight has shape [4, 32]"), std::string::npos) << message;
  }
}

TEST_F(sd_trainer_test, cached_latents_and_embeddings_give_the_loss_of_the_images) {
  SKIP_WITHOUT_TINY_SD();
  sd_trainer trainer(options(), settings());
  const auto images = image_batch();
  auto latents = trainer.pipeline().encode_images(
    torch::from_blob(const_cast<float*>(images.images.data()), {2, 3, 32, 32})).contiguous();
  auto text = trainer.pipeline().encode_prompts(images.captions).contiguous();
  training_batch cached;
  cached.count = 2;
  cached.channels = 3;
  cached.height = cached.width = 32;
  cached.latent_channels = 4;
  cached.latent_height = cached.latent_width = 16;
  cached.latents.assign(latents.data_ptr<float>(), latents.data_ptr<float>() + latents.numel());
  cached.embedding_length = 77;
  cached.embedding_width = 32;
  cached.embeddings.assign(text.data_ptr<float>(), text.data_ptr<float>() + text.numel());
  const auto state = trainer.rng_state();
  EXPECT_EQ(loss_at(trainer, cached, state), loss_at(trainer, images, state));
}

TEST_F(sd_trainer_test, min_snr_v_prediction_and_offset_noise_train) {
  SKIP_WITHOUT_TINY_SD();
  auto config = std::string(tiny_sd::scheduler_config);
  config.replace(config.find("\"epsilon\""), 9, "\"v_prediction\"");
  tiny_sd::write_file(root_ / "pipeline" / "scheduler" / "scheduler_config.json", config);
  auto o = options();
  o.min_snr_gamma = 5.0;
  o.offset_noise = 0.1;
  sd_trainer trainer(o, settings());
  EXPECT_EQ(trainer.describe().at("model.prediction_type"), "v_prediction");
  const auto batch = image_batch();
  for (int i = 0; i < 3; ++i)
    EXPECT_TRUE(std::isfinite(trainer.train_step(batch).loss));
}

TEST_F(sd_trainer_test, ema_decay_zero_keeps_no_copy) {
  SKIP_WITHOUT_TINY_SD();
  sd_trainer trainer(options(), settings(1e-3, 0.0));
  EXPECT_FALSE(trainer.has_ema());
  EXPECT_EQ(&trainer.ema_module(), &trainer.module());
  trainer.train_step(image_batch());
  bool used_trained = false;
  trainer.with_sampling_unet([&](unet2d_condition& unet) {
    used_trained = unet.get() == trainer.unet().get();
  });
  EXPECT_TRUE(used_trained);
}

TEST_F(sd_trainer_test, a_missing_part_is_refused_naming_the_file) {
  SKIP_WITHOUT_TINY_SD();
  fs::remove(root_ / "pipeline" / "vae" / "diffusion_pytorch_model.safetensors");
  try {
    sd_trainer trainer(options(), settings());
    FAIL() << "no error";
  } catch (const std::runtime_error& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find((root_ / "pipeline" / "vae").string()), std::string::npos) << message;
    EXPECT_NE(message.find("diffusion_pytorch_model.safetensors"), std::string::npos) << message;
  }
}

} // namespace
} // namespace ddactor
