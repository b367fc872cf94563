// Building a Stable Diffusion pipeline from a diffusers folder; see sd_pipeline.hpp.
#include "models/sd/sd_pipeline.hpp"

#include <fstream>
#include <stdexcept>

#include "models/sd/module_state_loading.hpp"
#include "runtime/tensor_blob.hpp"

namespace ddactor {

namespace {

// The message of a reader's exception with the file it concerns, where the reader did not say.
[[noreturn]] void fail_with_file(const std::filesystem::path& file, const std::exception& e) {
  const std::string what = e.what();
  if (what.find(file.string()) != std::string::npos)
    throw std::runtime_error(what);
  throw std::runtime_error(file.string() + ": " + what);
}

void freeze(torch::nn::Module& module) {
  for (auto& parameter : module.parameters())
    parameter.set_requires_grad(false);
  module.eval();
}

unet2d_condition load_unet(const diffusers_model_part& part, const memory_saving_options& memory) {
  unet2d_condition_config config;
  try {
    config = unet2d_condition_config::from_file(part.config_file);
    config.validate();
  } catch (const std::exception& e) {
    fail_with_file(part.config_file, e);
  }
  unet2d_condition unet(config, memory);
  load_module_state(*unet, part.weights_file);
  return unet;
}

autoencoder_kl load_vae(const diffusers_model_part& part) {
  autoencoder_kl_config config;
  try {
    config = autoencoder_kl_config::from_file(part.config_file);
    config.validate();
  } catch (const std::exception& e) {
    fail_with_file(part.config_file, e);
  }
  autoencoder_kl vae(config);
  load_module_state(*vae, part.weights_file, autoencoder_kl_state_options());
  freeze(*vae);
  return vae;
}

// Bytes hashed per read while digesting a weights file.
constexpr size_t digest_chunk_bytes = size_t{8} << 20;

uint64_t file_digest(const std::filesystem::path& file, uint64_t seed) {
  std::ifstream in(file, std::ios::binary);
  if (!in)
    throw std::runtime_error(file.string() + ": cannot be read to compute its digest");
  std::vector<char> chunk(digest_chunk_bytes);
  uint64_t digest = blob_checksum(file.filename().string(), seed);
  while (in.read(chunk.data(), static_cast<std::streamsize>(chunk.size())) || in.gcount() > 0)
    digest = blob_checksum({chunk.data(), static_cast<size_t>(in.gcount())}, digest);
  if (in.bad())
    throw std::runtime_error(file.string() + ": read error while computing its digest");
  return digest;
}

} // namespace

std::set<diffusers_part> sd_required_parts(bool with_unet) {
  std::set<diffusers_part> parts = {diffusers_part::vae, diffusers_part::text_encoder,
                                    diffusers_part::tokenizer, diffusers_part::scheduler};
  if (with_unet)
    parts.insert(diffusers_part::unet);
  return parts;
}

sd_pipeline load_sd_pipeline(const std::filesystem::path& root,
                             const sd_pipeline_options& options) {
  sd_pipeline out;
  diffusers_folder_options folder_options;
  folder_options.required_parts = sd_required_parts(options.unet);
  try {
    out.folder = read_diffusers_folder(root, folder_options);
    out.vae = load_vae(*out.folder.vae);
    out.text_encoder = load_clip_text_model(*out.folder.text_encoder);
    freeze(*out.text_encoder);
    out.tokenizer =
      std::make_shared<const clip_tokenizer>(clip_tokenizer::load(out.folder.tokenizer->folder));
    const auto positions = out.text_encoder->config.max_position_embeddings;
    if (out.tokenizer->model_max_length() > positions)
      throw std::runtime_error(
        (out.folder.tokenizer->folder / "tokenizer_config.json").string() +
        ": model_max_length " + std::to_string(out.tokenizer->model_max_length()) +
        " exceeds the text encoder's max_position_embeddings (" + std::to_string(positions) + ")");
    out.scheduler = scheduler_config::load(out.folder.scheduler->config_file);
    out.schedule.emplace(noise_schedule_options_from(*out.scheduler));
    if (options.unet)
      out.unet = load_unet(*out.folder.unet, options.memory);
  } catch (const diffusers_folder_error&) {
    throw;
  } catch (const c10::Error& e) {
    throw std::runtime_error(root.string() + ": " + e.msg());
  }
  return out;
}

int64_t sd_pipeline::latent_channels() const { return vae->config().latent_channels; }

int64_t sd_pipeline::vae_scale_factor() const {
  return int64_t{1} << (vae->config().block_out_channels.size() - 1);
}

void sd_pipeline::to(const torch::Device& target) {
  if (unet)
    unet->to(target);
  if (vae)
    vae->to(target);
  if (text_encoder)
    text_encoder->to(target);
  device = target;
}

torch::Tensor sd_pipeline::encode_prompts(const std::vector<std::string>& prompts) {
  torch::NoGradGuard no_grad;
  const int64_t length = tokenizer->model_max_length();
  auto ids = torch::empty({static_cast<int64_t>(prompts.size()), length}, torch::kInt64);
  auto* row = ids.data_ptr<int64_t>();
  for (const auto& prompt : prompts) {
    const auto encoding = tokenizer->encode_padded(prompt, length);
    std::copy(encoding.input_ids.begin(), encoding.input_ids.end(), row);
    row += length;
  }
  return text_encoder->prompt_embeddings(ids.to(device));
}

torch::Tensor sd_pipeline::encode_images(const torch::Tensor& images) {
  torch::NoGradGuard no_grad;
  return vae->encode_to_latents(images.to(device)).contiguous();
}

torch::Tensor sd_pipeline::decode_latents(const torch::Tensor& latents) {
  torch::NoGradGuard no_grad;
  return vae->decode_latents(latents.to(device));
}

uint64_t frozen_parts_digest(const diffusers_folder& folder) {
  uint64_t digest = 0;
  for (const auto* part : {&folder.vae, &folder.text_encoder})
    if (*part) {
      digest = file_digest((*part)->config_file, digest);
      digest = file_digest((*part)->weights_file, digest);
    }
  if (folder.tokenizer)
    for (const auto* name : {"vocab.json", "merges.txt", "tokenizer_config.json",
                             "special_tokens_map.json"}) {
      const auto file = folder.tokenizer->folder / name;
      std::error_code error;
      if (std::filesystem::is_regular_file(file, error))
        digest = file_digest(file, digest);
    }
  return digest;
}

} // namespace ddactor
