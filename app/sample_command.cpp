// `ddactor sample`: a PNG grid from a checkpoint; see commands.hpp.
#include "app/commands.hpp"

#include <spdlog/spdlog.h>

#include <cmath>

#include "app/ddm_models.hpp"
#include "app/inference_model.hpp"
#include "app/sd_commands.hpp"
#include "app/stop_signal.hpp"
#include "models/device_transfer.hpp"
#include "models/ensemble.hpp"
#include "models/image_generation.hpp"
#include "models/latent_dit_sampling.hpp"
#include "models/tensor_image_grid.hpp"
#include "runtime/image_io.hpp"
#include "runtime/run_data.hpp"

namespace ddactor {

namespace {

void write_grid(const std::filesystem::path& out, const torch::Tensor& grid, int64_t per_row,
                const std::vector<std::string>& row_labels) {
  write_tensor_grid_png(out, grid, per_row, row_labels);
  spdlog::info("wrote {}", out.string());
}

// A latent DiT (model.latent): the prompts through the folder's text encoder, the latents
// through its VAE's decoder.
int sample_latent_dit(const run_config& config, const inference_model& loaded,
                      const sample_request& request, const generation_settings& gen,
                      int64_t per_row) {
  if (request.class_index)
    throw std::invalid_argument("--class needs a class-conditioned model; a latent DiT takes "
                                "--prompt");
  sd_pipeline_options options;
  options.unet = false;
  auto pipeline = load_sd_pipeline(config.model.pretrained, options);
  pipeline.to(parse_training_device(config.run.device_of_rank(0)));
  latent_dit_request latent;
  latent.prompts = request.prompts;
  if (latent.prompts.empty())
    latent.prompts.push_back("");
  latent.per_prompt = per_row;
  latent.negative_prompt = request.negative_prompt.value_or("");
  spdlog::info("sampling {} images from {} (latent DiT, decoded by {}): {} {} steps, CFG {}",
               per_row * static_cast<int64_t>(latent.prompts.size()), loaded.checkpoint.string(),
               config.model.pretrained.string(),
               gen.sampler == sampler_kind::heun ? "heun" : "euler", gen.steps, gen.cfg_scale);
  const auto images = generate_latent_dit_images(loaded.model, pipeline, latent, gen,
                                                 show_progress("sampling", "steps"));
  write_grid(request.out, images, per_row, prompt_labels(latent.prompts));
  return 0;
}

} // namespace

int sample_command(const run_config& config, const sample_request& request) {
  if (!config.model.pretrained.empty() && !config.model.latent)
    return sd_sample_command(config, request);
  if (config.model.latent && !request.ensemble.empty())
    throw std::invalid_argument("--ensemble combines pixel DiT experts with their router; the "
                                "experts of latent DiTs sample one by one (ddm.expert = k)");
  if (request.negative_prompt && !config.model.latent)
    throw std::invalid_argument("--negative-prompt is for Stable Diffusion (model.pretrained)");
  if (!request.lora.empty())
    throw std::invalid_argument("--lora is for Stable Diffusion (model.pretrained)");
  // The model: the run's own DiT, or a DDM's experts combined by its router.
  inference_model loaded;
  ddm_models ddm;
  if (request.ensemble.empty()) {
    loaded = load_inference_model(config, request.checkpoint, request.raw_weights);
  } else {
    ddm = load_ddm_models(config);
    loaded.model = ddm.experts.front();
    loaded.checkpoint = expert_config(config, 0).run_dir();
  }
  // On the run's (first) device; the noise is drawn on the host, so a seed gives the same images.
  const auto device = parse_training_device(config.run.device_of_rank(0));
  loaded.model->to(device);
  if (ddm.routing) {
    ddm.routing->to(device);
    for (auto& expert : ddm.experts)
      expert->to(device);
  }
  const auto& o = loaded.model->options();
  generation_settings gen;
  gen.device = device;
  gen.steps = request.steps.value_or(config.sample.steps);
  gen.sampler = parse_sampler(request.sampler.value_or(config.sample.sampler));
  gen.cfg_scale = request.cfg_scale.value_or(config.sample.cfg_scale);
  gen.seed = request.seed.value_or(config.sample.seed);
  gen.stop_requested = stop_requested;
  if (gen.steps < 1 || gen.steps > 1000)
    throw std::invalid_argument("--steps must be from 1 to 1000, not " + std::to_string(gen.steps));
  if (!std::isfinite(gen.cfg_scale) || gen.cfg_scale < 0 || gen.cfg_scale > 100)
    throw std::invalid_argument("--cfg must be a number from 0 to 100 (1: no guidance)");
  int64_t per_row = request.count > 0 ? request.count : config.sample.per_class;
  if (config.model.latent)
    return sample_latent_dit(config, loaded, request, gen, per_row);

  dit_condition cond;
  int64_t rows = 1;
  std::vector<std::string> row_labels;
  if (request.class_index) {
    if (o.conditioning != "class")
      throw std::invalid_argument("--class needs a class-conditioned model; this one is " +
                                  o.conditioning + "-conditioned");
    if (*request.class_index < 0 || *request.class_index >= o.num_classes)
      throw std::invalid_argument("--class must be in [0, " + std::to_string(o.num_classes) +
                                  ")");
    cond.labels = torch::full({per_row}, *request.class_index, torch::kInt64);
    row_labels = {class_label_names(config, o.num_classes)[static_cast<size_t>(*request.class_index)]};
  } else if (!request.prompts.empty()) {
    if (o.conditioning != "caption")
      throw std::invalid_argument("--prompt needs a caption-conditioned model; this one is " +
                                  o.conditioning + "-conditioned");
    rows = static_cast<int64_t>(request.prompts.size());
    cond = prompt_rows(request.prompts, per_row, o.caption.max_bytes);
    row_labels = prompt_labels(request.prompts);
  } else if (o.conditioning == "class") {
    rows = o.num_classes;
    cond = class_rows(rows, per_row);
    row_labels = class_label_names(config, rows);
  } else if (o.conditioning == "caption") {
    cond = prompt_rows({""}, per_row, o.caption.max_bytes);
    row_labels = prompt_labels({""});
  }
  spdlog::info("sampling {} images from {}{}: {} {} steps, CFG {}", rows * per_row,
               loaded.checkpoint.string(),
               request.ensemble.empty() ? "" : " (DDM ensemble, " + request.ensemble + ")",
               gen.sampler == sampler_kind::heun ? "heun" : "euler", gen.steps, gen.cfg_scale);
  const auto progress = show_progress("sampling", "steps");
  torch::Tensor images;
  if (request.ensemble.empty()) {
    images = generate_images(loaded.model, cond, gen, rows * per_row, progress);
  } else {
    std::vector<expert_function> experts;
    for (auto& expert : ddm.experts)
      experts.push_back(local_expert(expert, gen.cfg_scale));
    ensemble_options options;
    options.strategy = parse_routing(request.ensemble);
    options.top_k = request.top_k;
    auto make_field = [&](const dit_condition& part, int64_t) {
      return ensemble_velocity(ddm.routing, experts, part, options);
    };
    images = generate_with_field(make_field, {o.in_channels, o.image_size}, cond, gen,
                                 rows * per_row, progress);
  }
  write_grid(request.out, images, per_row, row_labels);
  return 0;
}

} // namespace ddactor
