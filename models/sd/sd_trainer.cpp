// Stable Diffusion fine-tuning (full or LoRA); see sd_trainer.hpp.
#include "models/sd/sd_trainer.hpp"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <sstream>
#include <stdexcept>

#include "models/flat_parameters.hpp"
#include "models/sd/encoded_batch.hpp"
#include "models/sd/lora_file.hpp"
#include "models/slice_draws.hpp"

namespace ddactor {

namespace {

// Attention queries per chunk when train.checkpoint_activations is on: at 64 x 64 latents
// (512 px) the 4096 x 4096 scores of one head shrink to 1024 x 4096.
constexpr int64_t checkpointed_attention_chunk = 1024;

const char* const kind_key = "model.kind";
const char* const sd_kind = "stable-diffusion";

std::string joined(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& name : names) {
    if (!out.empty())
      out += ',';
    out += name;
  }
  return out;
}

std::vector<std::string> split_list(const std::string& text) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= text.size()) {
    const auto comma = text.find(',', start);
    out.push_back(text.substr(start, comma == std::string::npos ? std::string::npos
                                                                 : comma - start));
    if (comma == std::string::npos)
      break;
    start = comma + 1;
  }
  return out;
}

// Puts the trained values back when a swap for sampling ends, however it ends.
class restore_on_exit {
 public:
  restore_on_exit(torch::Tensor target, torch::Tensor saved)
    : target_(std::move(target)), saved_(std::move(saved)) {}
  ~restore_on_exit() {
    torch::NoGradGuard no_grad;
    target_.copy_(saved_);
  }
  restore_on_exit(const restore_on_exit&) = delete;
  restore_on_exit& operator=(const restore_on_exit&) = delete;

 private:
  torch::Tensor target_;
  torch::Tensor saved_;
};

sd_pipeline load_for_training(const sd_trainer_options& options) {
  sd_pipeline_options pipeline_options;
  pipeline_options.memory = sd_memory_options(options.checkpoint_activations);
  return load_sd_pipeline(options.pretrained, pipeline_options);
}

} // namespace

memory_saving_options sd_memory_options(bool checkpoint_activations) {
  memory_saving_options memory;
  memory.checkpoint_activations = checkpoint_activations;
  memory.attention_query_chunk_size = checkpoint_activations ? checkpointed_attention_chunk : 0;
  return memory;
}

sd_trainer_options sd_options_of_checkpoint(const std::map<std::string, std::string>& metadata) {
  auto value = [&](const std::string& key) -> const std::string& {
    const auto it = metadata.find(key);
    if (it == metadata.end())
      throw std::runtime_error("checkpoint metadata has no '" + key +
                               "' (not a Stable Diffusion checkpoint)");
    return it->second;
  };
  if (value(kind_key) != sd_kind)
    throw std::runtime_error("checkpoint holds a " + value(kind_key) +
                             " model, not a Stable Diffusion fine-tune");
  sd_trainer_options options;
  options.pretrained = value("model.pretrained");
  try {
    options.lora.rank = std::stoll(value("model.lora_rank"));
    options.lora.alpha = std::stod(value("model.lora_alpha"));
  } catch (const std::logic_error&) {
    throw std::runtime_error("checkpoint metadata model.lora_rank / model.lora_alpha are not "
                             "numbers");
  }
  if (options.uses_lora())
    options.lora.targets = split_list(value("model.lora_targets"));
  return options;
}

sd_trainer::sd_trainer(sd_trainer_options options, trainer_settings settings)
  : model_trainer(settings), options_(std::move(options)), pipeline_(load_for_training(options_)) {
  auto& unet = pipeline_.unet;
  const bool keep_ema = settings.ema_decay > 0;
  // The frozen parts and the UNet the adapters hook into; attach_modules moves what trains.
  pipeline_.to(settings.device);
  if (options_.uses_lora()) {
    for (auto& parameter : unet->parameters())
      parameter.set_requires_grad(false);
    std::vector<adapter_site> sites;
    try {
      sites = find_adapter_sites(*unet, options_.lora.targets);
    } catch (const std::invalid_argument& e) {
      throw std::runtime_error(std::string("train.lora_targets: ") + e.what());
    }
    // Every peer of a swarm draws the same initial adapters.
    torch::manual_seed(settings.seed);
    adapters_ = low_rank_adapters(sites, options_.lora.rank, options_.lora.alpha);
    adapters_->attach_to(*unet);
    if (keep_ema)
      ema_adapters_ = low_rank_adapters(sites, options_.lora.rank, options_.lora.alpha);
    attach_modules(adapters_.ptr(), keep_ema ? ema_adapters_.ptr() : nullptr);
  } else {
    if (keep_ema)
      ema_unet_ = unet2d_condition(unet->config());
    attach_modules(unet.ptr(), keep_ema ? ema_unet_.ptr() : nullptr);
  }
  unet->train();
  empty_embedding_ = pipeline_.encode_prompts({""});
}

torch::Tensor sd_trainer::batch_loss(const training_batch& batch, at::Generator& generator) {
  const auto& schedule = *pipeline_.schedule;
  const auto latents = batch_latents(batch, pipeline_);
  auto embeddings = batch_embeddings(batch, pipeline_, empty_embedding_);
  const int64_t n = batch.count;
  // Drawn for the whole batch, this slice keeping its rows (models/slice_draws.hpp).
  const slice_draws draws(batch);
  const int64_t total = draws.total();
  auto noise_shape = latents.sizes().vec();
  noise_shape[0] = total;
  // Drawn on the host (see trainer_settings::device), then moved beside the latents.
  auto noise = draws.rows(at::randn(noise_shape, generator, torch::kFloat32));
  if (options_.offset_noise > 0)
    noise = noise + options_.offset_noise *
                      draws.rows(at::randn({total, latents.size(1), 1, 1}, generator,
                                           torch::kFloat32));
  noise = on_device(noise);
  const auto timesteps = on_device(draws.rows(
    at::randint(0, schedule.num_train_timesteps(), {total}, generator, torch::kInt64)));
  if (options_.caption_dropout > 0) {
    const auto dropped = on_device(
      draws.rows(at::rand({total}, generator, torch::kFloat32)).lt(options_.caption_dropout));
    embeddings = torch::where(dropped.view({n, 1, 1}), empty_embedding_, embeddings);
  }

  const auto noisy = schedule.add_noise(latents, noise, timesteps);
  const auto target = schedule.training_target(latents, noise, timesteps);
  const auto prediction = pipeline_.unet->forward(noisy, timesteps, embeddings);
  auto per_sample = (prediction - target).pow(2).mean({1, 2, 3});
  if (options_.min_snr_gamma > 0) {
    const auto snr = schedule.snr(timesteps);
    auto weight = torch::clamp_max(snr, options_.min_snr_gamma);
    weight = schedule.options().prediction == prediction_type::v_prediction ? weight / (snr + 1)
                                                                            : weight / snr;
    per_sample = per_sample * weight;
  }
  return per_sample.mean();
}

void sd_trainer::with_sampling_unet(const std::function<void(unet2d_condition&)>& use) {
  torch::NoGradGuard no_grad;
  if (!has_ema()) {
    use(pipeline_.unet);
    return;
  }
  if (!options_.uses_lora()) {
    use(ema_unet_);
    return;
  }
  restore_on_exit restore(parameters().values(), parameters().values().clone());
  parameters().values().copy_(ema_parameters().values());
  use(pipeline_.unet);
}

std::map<std::string, std::string> sd_trainer::describe() const {
  std::ostringstream alpha;
  alpha.precision(17);
  alpha << options_.lora.alpha;
  return {{kind_key, sd_kind},
          {"model.pretrained", options_.pretrained.string()},
          {"model.training", options_.uses_lora() ? "lora" : "full"},
          {"model.lora_rank", std::to_string(options_.uses_lora() ? options_.lora.rank : 0)},
          {"model.lora_alpha", alpha.str()},
          {"model.lora_targets", options_.uses_lora() ? joined(options_.lora.targets) : ""},
          {"model.prediction_type",
           pipeline_.schedule->options().prediction == prediction_type::v_prediction
             ? "v_prediction"
             : "epsilon"}};
}

void sd_trainer::write_exports(const std::filesystem::path& run_dir, export_moment moment) {
  if (options_.uses_lora()) {
    const auto file = run_dir / "lora.safetensors";
    write_lora_file(file, has_ema() ? *ema_adapters_ : *adapters_);
    spdlog::info("LoRA adapters written to {} ({} layers, rank {})", file.string(),
                 adapters_->sites().size(), options_.lora.rank);
    return;
  }
  if (moment != export_moment::end)
    return;  // a whole pipeline folder per checkpoint would cost gigabytes; the end has one
  const auto folder = run_dir / "diffusers";
  replace_diffusers_folder(pipeline_.folder, has_ema() ? *ema_unet_ : *pipeline_.unet, folder);
  spdlog::info("fine-tuned pipeline written to {} (diffusers format)", folder.string());
}

void replace_diffusers_folder(const diffusers_folder& source, torch::nn::Module& unet,
                              const std::filesystem::path& destination) {
  namespace fs = std::filesystem;
  const std::string pid = std::to_string(::getpid());
  fs::path fresh = destination;
  fresh += ".new." + pid;
  fs::path retired = destination;
  retired += ".old." + pid;
  std::error_code ignored;
  fs::remove_all(fresh, ignored);
  write_diffusers_folder_with_unet(source, unet, fresh);
  if (fs::exists(destination))
    fs::rename(destination, retired);
  fs::rename(fresh, destination);
  fs::remove_all(retired, ignored);
}

} // namespace ddactor
