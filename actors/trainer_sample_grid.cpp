// The trainer's sample grids (rank 0, on the training thread): a DiT's rows of classes or
// captions, a latent DiT's or Stable Diffusion's rows of grid prompts, written as PNG files.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include "actors/trainer_state.hpp"
#include "models/diffusion_trainer.hpp"
#include "models/image_generation.hpp"
#include "models/latent_dit_sampling.hpp"
#include "models/latent_dit_trainer.hpp"
#include "models/sd/sd_sampling.hpp"
#include "models/sd/sd_trainer.hpp"
#include "models/tensor_image_grid.hpp"
#include "runtime/progress_meter.hpp"
#include "runtime/run_data.hpp"

namespace ddactor::trainer_internal {

namespace {

// A Stable Diffusion run's grid: one row per grid prompt at the training resolution, with the
// sampler sample.sampler names (or the folder's default), from the EMA weights where there are.
torch::Tensor sample_sd_grid(trainer_state& st, sd_trainer& sd, int64_t& columns,
                             std::vector<std::string>& row_labels) {
  const auto& cfg = st.options.config;
  sd_sampling_settings settings;
  settings.sampler = sd_sampler_named(cfg.sample.sampler)
                       .value_or(default_sd_sampler(*sd.pipeline().scheduler));
  settings.steps = cfg.sample.steps;
  settings.cfg_scale = cfg.sample.cfg_scale;
  settings.seed = cfg.sample.seed;
  settings.width = settings.height = cfg.data.resolution;
  auto prompts = st.options.grid_prompts;
  if (prompts.empty())
    prompts.push_back("");
  if (prompts.size() > 4)
    prompts.resize(4);  // each image costs a full sampling on the training thread
  row_labels = prompt_labels(prompts);
  columns = std::min(cfg.sample.per_class, 4);
  sampling_callbacks callbacks;
  callbacks.on_progress = show_progress(
    fmt::format("sample grid of {} images", columns * static_cast<int64_t>(prompts.size())),
    "steps");
  callbacks.stop_requested = st.options.stop_requested;
  sd_generation result;
  sd.with_sampling_unet([&](unet2d_condition& unet) {
    result = generate_sd_images(sd.pipeline(), unet, prompts, columns, settings, callbacks);
  });
  if (result.outcome == sampling_outcome::stopped)
    throw work_stopped();
  return result.images;
}

void write_grid_png(trainer_state& st, const torch::Tensor& grid, int64_t columns,
                    const std::vector<std::string>& row_labels) {
  auto dir = st.options.config.run_dir() / "samples";
  std::filesystem::create_directories(dir);
  auto path = dir / fmt::format("step_{:08}.png", current_step(st));
  write_tensor_grid_png(path, grid, columns, row_labels);
  std::filesystem::copy_file(path, dir / "latest.png",
                             std::filesystem::copy_options::overwrite_existing);
  spdlog::info("sample grid written to {}", path.string());
}

// A latent DiT's grid: one row per grid prompt (at most 4: each image costs a sampling and a
// VAE decode on the training thread), from the EMA weights.
void write_latent_dit_grid(trainer_state& st, latent_dit_trainer& latent,
                           const generation_settings& gen) {
  auto model = latent.ema_model();
  latent_dit_request request;
  if (model->options().conditioning == "text_embedding")
    request.prompts = st.options.grid_prompts;
  if (request.prompts.empty())
    request.prompts.push_back("");
  if (request.prompts.size() > 4)
    request.prompts.resize(4);
  request.per_prompt = std::min(st.options.config.sample.per_class, 4);
  const auto count = static_cast<int64_t>(request.prompts.size()) * request.per_prompt;
  auto images = generate_latent_dit_images(
    model, latent.pipeline(), request, gen,
    show_progress(fmt::format("sample grid of {} images", count), "steps"));
  write_grid_png(st, images, request.per_prompt, prompt_labels(request.prompts));
}

} // namespace

void write_sample_grid(trainer_state& st) {
  const auto& cfg = st.options.config;
  if (auto* sd = dynamic_cast<sd_trainer*>(st.model.get())) {
    int64_t columns = 1;
    std::vector<std::string> row_labels;
    auto grid = sample_sd_grid(st, *sd, columns, row_labels);
    write_grid_png(st, grid, columns, row_labels);
    return;
  }
  auto* diffusion = dynamic_cast<diffusion_trainer*>(st.model.get());
  if (diffusion == nullptr)
    return;  // a router has no samples to show
  auto model = diffusion->ema_model();
  generation_settings gen;
  gen.steps = cfg.sample.steps;
  gen.sampler = parse_sampler(cfg.sample.sampler);
  gen.cfg_scale = cfg.sample.cfg_scale;
  gen.seed = cfg.sample.seed;
  gen.stop_requested = st.options.stop_requested;
  if (auto* latent = dynamic_cast<latent_dit_trainer*>(diffusion)) {
    write_latent_dit_grid(st, *latent, gen);
    return;
  }
  dit_condition cond;
  int64_t rows = 8;
  int64_t columns = cfg.sample.per_class;
  std::vector<std::string> row_labels;
  if (cfg.model.conditioning == "class") {
    rows = cfg.model.num_classes;
    cond = class_rows(rows, columns);
    row_labels = class_label_names(cfg, rows);
  } else if (cfg.model.conditioning == "caption") {
    auto prompts = st.options.grid_prompts;
    if (prompts.empty())
      prompts.push_back("");
    rows = static_cast<int64_t>(prompts.size());
    cond = prompt_rows(prompts, columns, cfg.model.text_max_bytes);
    row_labels = prompt_labels(prompts);
  }
  write_grid_png(st,
                 generate_images(model, cond, gen, rows * columns,
                                 show_progress(fmt::format("sample grid of {} images",
                                                           rows * columns),
                                               "steps")),
                 columns, row_labels);
}

} // namespace ddactor::trainer_internal
