// Text-to-image sampling with a Stable Diffusion pipeline; see sd_sampling.hpp.
#include "models/sd/sd_sampling.hpp"

#include <ATen/CPUGeneratorImpl.h>

#include <stdexcept>

#include "models/device_transfer.hpp"

namespace ddactor {

std::optional<latent_sampler_kind> sd_sampler_named(const std::string& name) {
  if (name == "ddim") return latent_sampler_kind::ddim;
  if (name == "euler") return latent_sampler_kind::euler_discrete;
  if (name == "dpm++2m") return latent_sampler_kind::dpm_solver_multistep;
  return std::nullopt;
}

std::string sd_sampler_name(latent_sampler_kind kind) {
  switch (kind) {
    case latent_sampler_kind::ddim: return "ddim";
    case latent_sampler_kind::euler_discrete: return "euler";
    case latent_sampler_kind::dpm_solver_multistep: return "dpm++2m";
  }
  return "?";
}

latent_sampler_kind default_sd_sampler(const scheduler_config& config) {
  return latent_sampler_kind_of(config.class_name())
    .value_or(latent_sampler_kind::dpm_solver_multistep);
}

sd_generation generate_sd_images(sd_pipeline& pipeline, unet2d_condition& unet,
                                 const std::vector<std::string>& prompts, int64_t per_prompt,
                                 const sd_sampling_settings& settings,
                                 const sampling_callbacks& callbacks) {
  torch::NoGradGuard no_grad;
  const int64_t factor = pipeline.vae_scale_factor();
  if (prompts.empty() || per_prompt < 1)
    throw std::invalid_argument("nothing to sample: no prompt or no image per prompt");
  if (settings.width % factor != 0 || settings.height % factor != 0 || settings.width < factor ||
      settings.height < factor)
    throw std::invalid_argument("the image size must be a positive multiple of " +
                                std::to_string(factor) + " pixels");
  std::vector<std::string> rows;
  for (const auto& prompt : prompts)
    for (int64_t k = 0; k < per_prompt; ++k)
      rows.push_back(prompt);
  const int64_t n = static_cast<int64_t>(rows.size());
  const auto conditional = pipeline.encode_prompts(rows);
  const bool guided = settings.cfg_scale != 1.0;
  torch::Tensor both;
  if (guided) {
    const auto unconditional =
      pipeline.encode_prompts({settings.negative_prompt}).expand_as(conditional);
    both = torch::cat({unconditional, conditional});
  }

  auto generator = at::make_generator<at::CPUGeneratorImpl>(settings.seed);
  // Drawn on the host: a seed gives the same images on any device.
  const auto noise =
    at::randn({n, pipeline.latent_channels(), settings.height / factor, settings.width / factor},
              generator, torch::kFloat32)
      .to(pipeline.device);
  auto sampler = make_latent_sampler(settings.sampler, *pipeline.scheduler);
  const latent_denoiser denoise = [&](const torch::Tensor& latents, const torch::Tensor& t) {
    if (!guided)
      return unet->forward(latents, t, conditional);
    const auto out = unet->forward(torch::cat({latents, latents}), t, both).chunk(2);
    return out[0] + settings.cfg_scale * (out[1] - out[0]);
  };
  const auto result = sample_latents(*sampler, denoise, noise, settings.steps, callbacks);
  sd_generation out;
  out.outcome = result.outcome;
  out.steps_done = result.steps_done;
  if (result.outcome == sampling_outcome::completed)
    out.images = on_host(pipeline.decode_latents(result.latents).clamp(-1.0, 1.0));
  return out;
}

} // namespace ddactor
