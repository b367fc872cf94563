// Sampling a latent DiT; see latent_dit_sampling.hpp.
#include "models/latent_dit_sampling.hpp"

#include <algorithm>
#include <stdexcept>

#include "models/device_transfer.hpp"

namespace ddactor {

namespace {

// Latents per VAE decoder pass: bounds the decoder's activations (they grow with the pixels).
constexpr int64_t decode_batch_size = 4;

} // namespace

torch::Tensor generate_latent_dit_images(dit model, sd_pipeline& pipeline,
                                         const latent_dit_request& request,
                                         generation_settings settings,
                                         const generation_progress& progress) {
  torch::NoGradGuard no_grad;
  if (request.per_prompt < 1)
    throw std::invalid_argument("a latent DiT samples at least one image per prompt");
  const auto& o = model->options();
  if (o.in_channels != pipeline.latent_channels())
    throw std::invalid_argument("the DiT sees " + std::to_string(o.in_channels) +
                                " channels; the folder's VAE makes " +
                                std::to_string(pipeline.latent_channels()));
  auto prompts = request.prompts;
  if (prompts.empty())
    prompts.push_back("");
  const int64_t count = static_cast<int64_t>(prompts.size()) * request.per_prompt;
  dit_condition cond;
  if (o.conditioning == "text_embedding") {
    cond.context = pipeline.encode_prompts(prompts).repeat_interleave(request.per_prompt, 0);
    if (cond.context.size(1) != o.context_length || cond.context.size(2) != o.context_width)
      throw std::invalid_argument("the folder's text encoder does not make the states this DiT "
                                  "was trained on");
    cond.null_context =
      pipeline.encode_prompts({request.negative_prompt}).expand_as(cond.context).contiguous();
  } else {
    const bool any_prompt = std::any_of(prompts.begin(), prompts.end(),
                                        [](const std::string& p) { return !p.empty(); });
    if (any_prompt || !request.negative_prompt.empty())
      throw std::invalid_argument("this latent DiT is unconditional (model.conditioning = "
                                  "\"none\"): it takes no prompt");
  }
  settings.clamp_to_pixel_range = false;
  const auto latents = generate_images(model, cond, settings, count, progress);
  std::vector<torch::Tensor> images;
  for (int64_t begin = 0; begin < count; begin += decode_batch_size) {
    if (settings.stop_requested && settings.stop_requested())
      throw work_stopped();
    const auto end = std::min(count, begin + decode_batch_size);
    images.push_back(on_host(pipeline.decode_latents(latents.slice(0, begin, end))));
  }
  return torch::cat(images, 0).clamp(-1.0, 1.0);
}

} // namespace ddactor
