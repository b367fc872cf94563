// The latent DiT's training; see latent_dit_trainer.hpp.
#include "models/latent_dit_trainer.hpp"

#include <stdexcept>
#include <string>

#include "models/sd/encoded_batch.hpp"

namespace ddactor {

dit_options latent_dit_options(dit_options shape, const sd_pipeline& pipeline,
                               const torch::Tensor& empty_prompt_embedding) {
  const int64_t scale = pipeline.vae_scale_factor();
  if (shape.image_size % scale != 0)
    throw std::invalid_argument("data.resolution (" + std::to_string(shape.image_size) +
                                ") must be a multiple of the VAE's scale factor (" +
                                std::to_string(scale) + ") for a latent DiT");
  shape.image_size /= scale;
  shape.in_channels = pipeline.latent_channels();
  shape.context_length = empty_prompt_embedding.size(1);
  shape.context_width = empty_prompt_embedding.size(2);
  return shape;
}

std::unique_ptr<latent_dit_trainer> latent_dit_trainer::create(
  const dit_options& pixel_shape, const std::filesystem::path& pretrained,
  trainer_settings settings) {
  sd_pipeline_options options;
  options.unet = false;
  auto pipeline = load_sd_pipeline(pretrained, options);
  pipeline.to(settings.device);
  auto empty = pipeline.encode_prompts({""});
  auto shape = latent_dit_options(pixel_shape, pipeline, empty);
  return std::unique_ptr<latent_dit_trainer>(new latent_dit_trainer(
    std::move(pipeline), std::move(empty), std::move(shape), pretrained, settings));
}

latent_dit_trainer::latent_dit_trainer(sd_pipeline pipeline, torch::Tensor empty_embedding,
                                       dit_options shape, std::filesystem::path pretrained,
                                       trainer_settings settings)
  : diffusion_trainer(std::move(shape), settings),
    pipeline_(std::move(pipeline)),
    empty_embedding_(std::move(empty_embedding)),
    pretrained_(std::move(pretrained)) {}

torch::Tensor latent_dit_trainer::batch_loss(const training_batch& batch,
                                             at::Generator& generator) {
  const auto& o = model_options();
  const auto latents = batch_latents(batch, pipeline_);
  if (latents.size(2) != o.image_size || latents.size(3) != o.image_size)
    throw std::invalid_argument(
      "latents of " + std::to_string(latents.size(2)) + "x" + std::to_string(latents.size(3)) +
      " do not fit the DiT's " + std::to_string(o.image_size) + "x" +
      std::to_string(o.image_size));
  dit_condition cond;
  if (o.conditioning == "text_embedding") {
    cond.context = batch_embeddings(batch, pipeline_, empty_embedding_);
    cond.null_context = empty_embedding_.expand_as(cond.context);
  }
  return flow_loss(latents, std::move(cond), generator, batch);
}

std::map<std::string, std::string> latent_dit_trainer::describe() const {
  auto description = diffusion_trainer::describe();
  description["model.latent"] = "true";
  description["model.pretrained"] = pretrained_.string();
  return description;
}

} // namespace ddactor
