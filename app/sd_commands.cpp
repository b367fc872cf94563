// Stable Diffusion's data, sampling and export commands; see sd_commands.hpp.
#include "app/sd_commands.hpp"

#include <spdlog/spdlog.h>

#include "app/stop_signal.hpp"
#include "models/device_transfer.hpp"
#include "models/sd/latent_cache.hpp"
#include "models/sd/sd_fine_tune.hpp"
#include "models/sd/sd_sampling.hpp"
#include "models/sd/sd_trainer.hpp"
#include "models/sd/unet2d_condition.hpp"
#include "models/tensor_image_grid.hpp"
#include "runtime/checkpoint_files.hpp"
#include "runtime/image_io.hpp"
#include "runtime/run_data.hpp"
#include "runtime/progress_meter.hpp"

namespace ddactor {

namespace {

// The checkpoint asked for, or the run's newest; empty when the run has none yet.
std::filesystem::path chosen_checkpoint(const run_config& config,
                                        const std::filesystem::path& requested) {
  if (!requested.empty()) {
    std::error_code error;
    if (!std::filesystem::is_regular_file(requested, error))
      throw std::runtime_error("checkpoint " + requested.string() + " does not exist");
    return requested;
  }
  const auto files = list_checkpoints(config.run_dir());
  return files.empty() ? std::filesystem::path() : files.back().path;
}

} // namespace

training_examples load_training_examples(const run_config& config) {
  training_examples examples;
  if (config.model.pretrained.empty())
    examples.data = load_run_data(config);
  else
    examples.latent = apply_ddm_split(config, load_latent_examples(config));
  return examples;
}

std::shared_ptr<const sd_example_set> load_latent_examples(const run_config& config) {
  // The UNet is built by the trainer; its config is read here too, so that one it cannot build
  // stops the run at once rather than after the latents are encoded and the trainer failed twice.
  if (!config.model.latent)
    unet2d_condition_config::from_file(config.model.pretrained / "unet" / "config.json");
  sd_pipeline_options pipeline_options;
  pipeline_options.unet = false;
  auto pipeline = load_sd_pipeline(config.model.pretrained, pipeline_options);
  // Encoding the latents once is the VAE's heaviest work: on the first trainer's device.
  pipeline.to(parse_training_device(config.run.device_of_rank(0)));
  sd_data_report report;
  return std::make_shared<const sd_example_set>(
    prepare_sd_examples(pipeline, latent_data_options(config, pipeline), report));
}

sd_data_options latent_data_options(const run_config& config, const sd_pipeline& pipeline) {
  sd_data_options options;
  options.image_folder = config.data.path;
  // The DDM root's (the run folder itself outside a DDM): `ddactor cluster` and every expert
  // read the same entries.
  options.cache_dir = config.ddm_root() / "latent_cache";
  options.resolution = config.data.resolution;
  options.buckets = config.data.buckets;
  options.cache = config.data.cache_latents;
  options.pixel_step = config.model.latent ? static_cast<int>(pipeline.vae_scale_factor()) : 64;
  return options;
}

int sd_sample_command(const run_config& config, const sample_request& request) {
  if (request.class_index)
    throw std::invalid_argument("--class needs a class-conditioned DiT; Stable Diffusion takes "
                                "--prompt");
  std::filesystem::path checkpoint;
  sd_fine_tune model;
  if (!request.lora.empty()) {
    if (!request.checkpoint.empty())
      throw std::invalid_argument("--lora and --checkpoint: give one (the weights come from "
                                  "either)");
    checkpoint = request.lora;
    model = load_sd_with_lora_file(config.model.pretrained, request.lora);
  } else {
    checkpoint = chosen_checkpoint(config, request.checkpoint);
    if (checkpoint.empty())
      spdlog::warn("{} has no checkpoint yet: sampling the pretrained model {} as it is",
                   config.run_dir().string(), config.model.pretrained.string());
    model = load_sd_fine_tune(config.model.pretrained, checkpoint, request.raw_weights);
  }

  model.pipeline.to(parse_training_device(config.run.device_of_rank(0)));
  sd_sampling_settings settings;
  const auto sampler_name = request.sampler.value_or(config.sample.sampler);
  settings.sampler =
    sd_sampler_named(sampler_name).value_or(default_sd_sampler(*model.pipeline.scheduler));
  if (request.sampler && !sd_sampler_named(*request.sampler))
    throw std::invalid_argument("--sampler " + *request.sampler +
                                " is a DiT sampler; Stable Diffusion samples with ddim, euler or "
                                "dpm++2m");
  settings.steps = request.steps.value_or(config.sample.steps);
  settings.cfg_scale = request.cfg_scale.value_or(config.sample.cfg_scale);
  settings.seed = request.seed.value_or(config.sample.seed);
  settings.width = settings.height = config.data.resolution;
  settings.negative_prompt = request.negative_prompt.value_or("");
  const int64_t per_prompt = request.count > 0 ? request.count : config.sample.per_class;
  std::vector<std::string> prompts = request.prompts;
  if (prompts.empty())
    prompts.push_back("");

  spdlog::info("sampling {} images ({} prompts x {}) from {}{}: {} {} steps, CFG {}, {}x{}",
               per_prompt * static_cast<int64_t>(prompts.size()), prompts.size(), per_prompt,
               checkpoint.empty() ? config.model.pretrained.string() : checkpoint.string(),
               model.options.uses_lora()
                 ? " (LoRA rank " + std::to_string(model.options.lora.rank) + ")"
                 : "",
               sd_sampler_name(settings.sampler), settings.steps, settings.cfg_scale,
               settings.width, settings.height);
  sampling_callbacks callbacks;
  callbacks.on_progress = show_progress("sampling", "steps");
  callbacks.stop_requested = [] { return stop_requested(); };
  const auto result =
    generate_sd_images(model.pipeline, model.pipeline.unet, prompts, per_prompt, settings,
                       callbacks);
  if (result.outcome == sampling_outcome::stopped)
    throw work_stopped();
  write_tensor_grid_png(request.out, result.images, per_prompt, prompt_labels(prompts));
  spdlog::info("wrote {}", request.out.string());
  return 0;
}

int export_command(const run_config& config, const std::filesystem::path& out,
                   const std::filesystem::path& requested, bool raw_weights) {
  if (config.model.pretrained.empty() || config.model.latent)
    throw std::invalid_argument("ddactor export writes a fine-tuned Stable Diffusion UNet as a "
                                "diffusers folder: it needs model.pretrained (without "
                                "model.latent)");
  const auto checkpoint = chosen_checkpoint(config, requested);
  if (checkpoint.empty())
    throw std::runtime_error(config.run_dir().string() + " has no checkpoint to export");
  auto model = load_sd_fine_tune(config.model.pretrained, checkpoint, raw_weights);
  if (model.adapters) {
    model.adapters->detach_from(*model.pipeline.unet);
    model.adapters->merge_into(*model.pipeline.unet);
  }
  write_diffusers_folder_with_unet(model.pipeline.folder, *model.pipeline.unet, out);
  spdlog::info("wrote {} (diffusers folder{}; step {} of {})", out.string(),
               model.adapters ? ", LoRA merged into the UNet" : "", model.step,
               checkpoint.string());
  return 0;
}

} // namespace ddactor
