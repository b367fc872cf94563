// Latents and text embeddings of a batch; see encoded_batch.hpp.
#include "models/sd/encoded_batch.hpp"

#include <stdexcept>
#include <string>

#include "models/device_transfer.hpp"

namespace ddactor {

namespace {

// The batch's float buffer as a tensor (no copy).
torch::Tensor view_of(const std::vector<float>& values, std::vector<int64_t> shape) {
  return torch::from_blob(const_cast<float*>(values.data()), shape, torch::kFloat32);
}

} // namespace

torch::Tensor batch_latents(const training_batch& batch, sd_pipeline& pipeline) {
  if (batch.has_latents()) {
    if (batch.latent_channels != pipeline.latent_channels())
      throw std::invalid_argument("cached latents have " + std::to_string(batch.latent_channels) +
                                  " channels, the VAE makes " +
                                  std::to_string(pipeline.latent_channels()));
    return to_training_device(
      view_of(batch.latents,
              {batch.count, batch.latent_channels, batch.latent_height, batch.latent_width}),
      pipeline.device);
  }
  if (batch.channels != 3)
    throw std::invalid_argument("a latent diffusion model trains on RGB images (data.channels = "
                                "3)");
  return pipeline.encode_images(to_training_device(
    view_of(batch.images, {batch.count, batch.channels, batch.height, batch.width}),
    pipeline.device));
}

torch::Tensor batch_embeddings(const training_batch& batch, sd_pipeline& pipeline,
                               const torch::Tensor& reference) {
  if (!batch.embeddings.empty()) {
    if (batch.embedding_length != reference.size(1) || batch.embedding_width != reference.size(2))
      throw std::invalid_argument("cached text embeddings do not fit the text encoder");
    return to_training_device(
      view_of(batch.embeddings, {batch.count, batch.embedding_length, batch.embedding_width}),
      pipeline.device);
  }
  if (static_cast<int64_t>(batch.captions.size()) != batch.count)
    throw std::invalid_argument("a text-conditioned latent model needs one caption per image");
  return pipeline.encode_prompts(batch.captions);
}

} // namespace ddactor
