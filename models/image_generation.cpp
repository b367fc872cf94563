// Batched, seeded image generation; see image_generation.hpp.
#include "models/image_generation.hpp"

#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>

#include "models/caption_encoder.hpp"
#include "models/device_transfer.hpp"

namespace ddactor {

torch::Tensor generate_with_field(const field_factory& make_field, const image_shape& shape,
                              const dit_condition& cond, const generation_settings& settings,
                              int64_t count, const generation_progress& progress) {
  torch::NoGradGuard no_grad;
  int64_t n = cond.batch_size() > 0 ? cond.batch_size() : count;
  if (n <= 0)
    throw std::invalid_argument("nothing to generate: no conditions and no count");
  auto generator = at::make_generator<at::CPUGeneratorImpl>(settings.seed);
  // All noise first, so the images do not depend on how they are batched.
  auto noise = at::randn({n, shape.channels, shape.size, shape.size}, generator,
                         torch::kFloat32);
  std::vector<torch::Tensor> parts;
  const int64_t batches = (n + settings.batch_size - 1) / settings.batch_size;
  const int64_t total_steps = batches * settings.steps;
  int64_t steps_done = 0;
  for (int64_t begin = 0; begin < n; begin += settings.batch_size) {
    auto end = std::min(n, begin + settings.batch_size);
    auto field = make_field(cond.slice(begin, end).to(settings.device), end - begin);
    flow_integration integration(noise.slice(0, begin, end).to(settings.device), settings.steps,
                                 settings.sampler);
    while (!integration.done()) {
      if (settings.stop_requested && settings.stop_requested())
        throw work_stopped();
      integration.step(field);
      if (progress)
        progress(++steps_done, total_steps);
    }
    parts.push_back(on_host(integration.current()));
  }
  auto out = torch::cat(parts, 0);
  return settings.clamp_to_pixel_range ? out.clamp(-1.0, 1.0) : out;
}

torch::Tensor generate_images(dit model, const dit_condition& cond,
                              const generation_settings& settings, int64_t count,
                              const generation_progress& progress) {
  model->eval();
  const auto& o = model->options();
  auto on_model_device = settings;
  on_model_device.device = model->parameters().front().device();
  auto make_field = [&](const dit_condition& part, int64_t) -> velocity_field {
    if (o.conditioning == "none")
      return [model, part](const torch::Tensor& x, const torch::Tensor& t) mutable {
        return model->forward(x, t, part);
      };
    return guided_velocity(model, part, settings.cfg_scale);
  };
  return generate_with_field(make_field, {o.in_channels, o.image_size}, cond, on_model_device,
                             count, progress);
}

dit_condition class_rows(int64_t num_classes, int64_t per_class) {
  dit_condition c;
  c.labels = torch::arange(num_classes, torch::kInt64).repeat_interleave(per_class);
  return c;
}

dit_condition prompt_rows(const std::vector<std::string>& prompts, int64_t per_prompt,
                          int64_t max_bytes) {
  std::vector<std::string> repeated;
  for (const auto& p : prompts)
    for (int64_t i = 0; i < per_prompt; ++i)
      repeated.push_back(p);
  dit_condition c;
  c.tokens = tokenize_captions(repeated, max_bytes);
  return c;
}

} // namespace ddactor
