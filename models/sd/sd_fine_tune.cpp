// Applying a run's trained weights to its pretrained pipeline; see sd_fine_tune.hpp.
#include "models/sd/sd_fine_tune.hpp"

#include <spdlog/spdlog.h>

#include "models/sd/lora_file.hpp"
#include "models/sd/module_state_loading.hpp"
#include "runtime/safetensors.hpp"

namespace ddactor {

namespace {

// The checkpoint's tensors for `module` under `prefix` ("ema." or "model."), loaded tensor by
// tensor; every other tensor of the file is passed over.
void load_prefixed(torch::nn::Module& module, const std::filesystem::path& checkpoint,
                   const safetensors_reader& header, const std::string& prefix) {
  module_state_options options;
  for (const auto& entry : header.entries())
    if (!entry.name.starts_with(prefix))
      options.ignored_keys.push_back(entry.name);
  options.module_name_for_file_key = [&prefix](const std::string& key) {
    return key.substr(prefix.size());
  };
  load_module_state(module, checkpoint, options);
}

} // namespace

sd_fine_tune load_sd_fine_tune(const std::filesystem::path& pretrained,
                               const std::filesystem::path& checkpoint, bool raw_weights) {
  sd_fine_tune out;
  std::optional<safetensors_reader> header;
  if (!checkpoint.empty()) {
    header.emplace(checkpoint);
    try {
      out.options = sd_options_of_checkpoint(header->metadata());
    } catch (const std::runtime_error& e) {
      throw std::runtime_error(checkpoint.string() + ": " + e.what());
    }
    if (const auto step = header->metadata().find("step"); step != header->metadata().end())
      out.step = std::stoll(step->second);
    if (std::filesystem::path(out.options.pretrained) != pretrained)
      spdlog::warn("{} was trained from {}; model.pretrained is now {}", checkpoint.string(),
                   out.options.pretrained.string(), pretrained.string());
  }
  out.options.pretrained = pretrained;
  out.pipeline = load_sd_pipeline(pretrained);
  out.pipeline.unet->eval();
  for (auto& parameter : out.pipeline.unet->parameters())
    parameter.set_requires_grad(false);
  if (!header)
    return out;

  const auto has_ema = header->metadata().count("ema") == 0 || header->metadata().at("ema") != "none";
  const std::string prefix = has_ema && !raw_weights ? "ema." : "model.";
  if (out.options.uses_lora()) {
    std::vector<adapter_site> sites;
    try {
      sites = find_adapter_sites(*out.pipeline.unet, out.options.lora.targets);
    } catch (const std::invalid_argument& e) {
      throw std::runtime_error(checkpoint.string() + ": " + e.what());
    }
    out.adapters = low_rank_adapters(sites, out.options.lora.rank, out.options.lora.alpha);
    load_prefixed(*out.adapters, checkpoint, *header, prefix);
    out.adapters->attach_to(*out.pipeline.unet);
  } else {
    load_prefixed(*out.pipeline.unet, checkpoint, *header, prefix);
  }
  for (auto& parameter : out.pipeline.unet->parameters())
    parameter.set_requires_grad(false);
  return out;
}

sd_fine_tune load_sd_with_lora_file(const std::filesystem::path& pretrained,
                                    const std::filesystem::path& lora_file) {
  sd_fine_tune out;
  out.options.pretrained = pretrained;
  out.pipeline = load_sd_pipeline(pretrained);
  out.pipeline.unet->eval();
  out.adapters = read_lora_adapters(lora_file, *out.pipeline.unet);
  out.options.lora.rank = out.adapters->rank();
  out.options.lora.alpha = out.adapters->alpha();
  out.options.lora.targets.clear();
  for (const auto& site : out.adapters->sites())
    out.options.lora.targets.push_back(site.path);
  out.adapters->attach_to(*out.pipeline.unet);
  for (auto& parameter : out.pipeline.unet->parameters())
    parameter.set_requires_grad(false);
  return out;
}

} // namespace ddactor
