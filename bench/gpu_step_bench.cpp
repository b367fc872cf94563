// ddactor_gpu_step_bench: ddactor's training step on a device (run.device), the figure that
// bench/gpu/pytorch_step.py measures for the same model in Python PyTorch eager on the same GPU,
// so that scripts/gpu-check.sh prints their ratio. Both models, both precisions:
//
//   dit-b2     DiT-B/2 (hidden 768, depth 12, 12 heads, patch 2) on 4 x 32 x 32 latents (256 px
//              images through SD's VAE, which is not part of the step), 1000 classes: the latent
//              DiT's training step (flow matching, flat AdamW, EMA), latents drawn at random.
//   sd15-unet  The SD 1.5 UNet (its config file, random weights) at 4 x 64 x 64 latents (512 px),
//              a random 77 x 768 text context: epsilon-prediction DDPM loss, flat AdamW, no EMA
//              (a full fine-tune's default in ddactor is EMA on; off here as in most SD scripts).
//
// Each step is model_trainer's (models/model_trainer.hpp), as a peer runs it: the batch goes
// from host memory to the device, the random draws are made on the host. Prints one JSON line:
// samples/s over --steps after --warmup steps, the device's peak allocated memory (CUDA builds)
// or the process's peak RSS, and the step's loss. Nothing is asserted.
//
//   ddactor_gpu_step_bench --model dit-b2 --device cuda:0 --precision bf16 --batch 32
//   ddactor_gpu_step_bench --model sd15-unet --unet-config sd15_unet_config.json --batch 8
#include <sys/resource.h>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#ifdef DDACTOR_WITH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#endif

#include <chrono>
#include <cstdio>
#include <memory>

#include "models/device_transfer.hpp"
#include "models/diffusion_trainer.hpp"
#include "models/model_trainer.hpp"
#include "models/sd/noise_schedule.hpp"
#include "models/sd/unet2d_condition.hpp"

namespace {

using namespace ddactor;
using clock_type = std::chrono::steady_clock;

// The SD UNet's step as a model_trainer: what sd_trainer computes without the pipeline's VAE
// and text encoder (the batch holds latents and a context already).
class unet_step : public model_trainer {
 public:
  unet_step(const unet2d_condition_config& config, trainer_settings settings)
    : model_trainer(settings), unet_(config), schedule_(noise_schedule_options{}) {
    attach_modules(unet_.ptr(), nullptr);
  }
  std::map<std::string, std::string> describe() const override { return {}; }

  /// The text context of every batch (random, fixed: the text encoder is not benchmarked).
  void set_context(torch::Tensor context) { context_ = on_device(context); }

 protected:
  torch::Tensor batch_loss(const training_batch& batch, at::Generator& generator) override {
    const int64_t n = batch.count;
    auto latents = on_device(torch::from_blob(
      const_cast<float*>(batch.latents.data()),
      {n, batch.latent_channels, batch.latent_height, batch.latent_width}, torch::kFloat32));
    auto noise = on_device(at::randn(latents.sizes(), generator, torch::kFloat32));
    auto timesteps = on_device(
      at::randint(0, schedule_.num_train_timesteps(), {n}, generator, torch::kInt64));
    auto noisy = schedule_.add_noise(latents, noise, timesteps);
    auto prediction = unet_->forward(noisy, timesteps, context_.expand({n, -1, -1}));
    return (prediction - noise).pow(2).mean();
  }

 private:
  unet2d_condition unet_;
  noise_schedule schedule_;
  torch::Tensor context_;
};

dit_options dit_b2_on_latents() {
  dit_options o;
  o.image_size = 32;
  o.in_channels = 4;
  o.patch_size = 2;
  o.hidden_size = 768;
  o.depth = 12;
  o.num_heads = 12;
  o.conditioning = "class";
  o.num_classes = 1000;
  return o;
}

training_batch random_batch(const std::string& model, int64_t n, uint64_t seed) {
  torch::manual_seed(seed);
  training_batch b;
  b.count = n;
  const auto latents = torch::randn({n, 4, model == "dit-b2" ? 32 : 64,
                                     model == "dit-b2" ? 32 : 64});
  const float* data = latents.data_ptr<float>();
  if (model == "dit-b2") {
    b.channels = 4;
    b.height = b.width = 32;
    b.images.assign(data, data + latents.numel());
    for (int64_t i = 0; i < n; ++i)
      b.labels.push_back((i * 37) % 1000);
  } else {
    b.latent_channels = 4;
    b.latent_height = b.latent_width = 64;
    b.latents.assign(data, data + latents.numel());
  }
  return b;
}

double peak_memory_bytes(const torch::Device& device) {
#ifdef DDACTOR_WITH_CUDA
  if (device.is_cuda()) {
    const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(device.index());
    return static_cast<double>(stats.allocated_bytes[0].peak);  // 0: the aggregate
  }
#endif
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_maxrss) * 1024.0;
}

void synchronize(const torch::Device& device) {
  if (device.is_cuda())
    torch::cuda::synchronize(device.index());
}

} // namespace

int main(int argc, char** argv) {
  CLI::App app{"ddactor's training step on a device, for comparison with PyTorch eager"};
  std::string model = "dit-b2", device_name = "cpu", precision_name = "fp32", unet_config;
  int64_t batch = 8;
  int warmup = 3, steps = 10;
  app.add_option("--model", model, "dit-b2 or sd15-unet")
    ->check(CLI::IsMember({"dit-b2", "sd15-unet"}));
  app.add_option("--device", device_name, "cpu, cuda or cuda:N");
  app.add_option("--precision", precision_name, "fp32, bf16 or fp16")
    ->check(CLI::IsMember({"fp32", "bf16", "fp16"}));
  app.add_option("--batch", batch, "samples per step")->check(CLI::Range(1, 4096));
  app.add_option("--warmup", warmup, "untimed steps first")->check(CLI::Range(0, 1000));
  app.add_option("--steps", steps, "timed steps")->check(CLI::Range(1, 100000));
  app.add_option("--unet-config", unet_config, "the SD 1.5 UNet's config.json (sd15-unet)");
  CLI11_PARSE(app, argc, argv);

  try {
    trainer_settings settings;
    settings.warmup_steps = 0;
    settings.device = parse_training_device(device_name);
    settings.precision = parse_training_precision(precision_name);
    settings.loss_scaling = settings.precision == training_precision::fp16;
    std::unique_ptr<model_trainer> trainer;
    if (model == "dit-b2") {
      trainer = std::make_unique<diffusion_trainer>(dit_b2_on_latents(), settings);
    } else {
      if (unet_config.empty())
        throw std::invalid_argument("--model sd15-unet needs --unet-config");
      settings.ema_decay = 0;
      auto unet = std::make_unique<unet_step>(unet2d_condition_config::from_file(unet_config),
                                              settings);
      unet->set_context(torch::randn({1, 77, 768}));
      trainer = std::move(unet);
    }
    const auto data = random_batch(model, batch, 1);
    double loss = 0;
    for (int i = 0; i < warmup; ++i)
      loss = trainer->train_step(data).loss;
    synchronize(settings.device);
    const auto started = clock_type::now();
    for (int i = 0; i < steps; ++i)
      loss = trainer->train_step(data).loss;  // the loss's item() waits for the step
    synchronize(settings.device);
    const double seconds = std::chrono::duration<double>(clock_type::now() - started).count();
    nlohmann::json out{{"runner", "ddactor"},
                       {"model", model},
                       {"device", device_name},
                       {"precision", precision_name},
                       {"batch", batch},
                       {"steps", steps},
                       {"samples_per_second", static_cast<double>(batch * steps) / seconds},
                       {"peak_memory_bytes", peak_memory_bytes(settings.device)},
                       {"parameters", trainer->parameters().size()},
                       {"loss", loss}};
    std::printf("%s\n", out.dump().c_str());
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ddactor_gpu_step_bench: %s\n", e.what());
    return 1;
  }
}
