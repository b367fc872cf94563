// The DDPM noise schedule and its training-side operations; see noise_schedule.hpp. The float32
// operations follow diffusers' order (powers as pow, not sqrt of a product) so that results are
// diffusers' to the last bit where the kernels allow.
#include "models/sd/noise_schedule.hpp"

#include <algorithm>
#include <cmath>
#include <map>
#include <numbers>

namespace ddactor {

namespace {

// diffusers' betas_for_alpha_bar with the cosine transform, in float64 like Python, then float32.
torch::Tensor cosine_betas(int64_t num_train_timesteps) {
  constexpr double max_beta = 0.999;
  auto alpha_bar = [](double t) {
    return std::pow(std::cos((t + 0.008) / 1.008 * std::numbers::pi / 2), 2.0);
  };
  std::vector<double> betas;
  const auto steps = static_cast<double>(num_train_timesteps);
  for (int64_t i = 0; i < num_train_timesteps; ++i) {
    const double t1 = static_cast<double>(i) / steps;
    const double t2 = static_cast<double>(i + 1) / steps;
    betas.push_back(std::min(1 - alpha_bar(t2) / alpha_bar(t1), max_beta));
  }
  return torch::tensor(betas, torch::kFloat64).to(torch::kFloat32);
}

// The default timestep_spacing of each class whose betas this file builds.
const std::map<std::string, timestep_spacing, std::less<>>& known_classes() {
  static const std::map<std::string, timestep_spacing, std::less<>> classes = {
      {"DDPMScheduler", timestep_spacing::leading},
      {"DDIMScheduler", timestep_spacing::leading},
      {"PNDMScheduler", timestep_spacing::leading},
      {"LMSDiscreteScheduler", timestep_spacing::linspace},
      {"EulerDiscreteScheduler", timestep_spacing::linspace},
      {"EulerAncestralDiscreteScheduler", timestep_spacing::linspace},
      {"DPMSolverMultistepScheduler", timestep_spacing::linspace},
      {"UniPCMultistepScheduler", timestep_spacing::linspace},
  };
  return classes;
}

// `tensor` ([B]) as [B, 1, 1, ...] with the rank of `like`.
torch::Tensor broadcast_over(torch::Tensor tensor, const torch::Tensor& like) {
  tensor = tensor.flatten();
  while (tensor.dim() < like.dim()) tensor = tensor.unsqueeze(-1);
  return tensor;
}

} // namespace

noise_schedule_options noise_schedule_options_from(const scheduler_config& config,
                                                   timestep_spacing class_default_spacing) {
  noise_schedule_options options;
  options.num_train_timesteps = config.integer("num_train_timesteps", 1000);
  if (options.num_train_timesteps < 1) config.refuse("num_train_timesteps", "must be positive");
  options.beta_start = config.number("beta_start", 0.0001);
  options.beta_end = config.number("beta_end", 0.02);

  const std::string betas = config.text("beta_schedule", "linear");
  if (betas == "linear") {
    options.betas = beta_schedule::linear;
  } else if (betas == "scaled_linear") {
    options.betas = beta_schedule::scaled_linear;
  } else if (betas == "squaredcos_cap_v2") {
    options.betas = beta_schedule::squaredcos_cap_v2;
  } else {
    config.refuse("beta_schedule", "supported: linear, scaled_linear, squaredcos_cap_v2");
  }
  if (!config.is_unset("trained_betas"))
    config.refuse("trained_betas", "not supported (betas come from beta_schedule)");
  if (config.flag("rescale_betas_zero_snr", false))
    config.refuse("rescale_betas_zero_snr", "not supported");

  const std::string prediction = config.text("prediction_type", "epsilon");
  if (prediction == "epsilon") {
    options.prediction = prediction_type::epsilon;
  } else if (prediction == "v_prediction") {
    options.prediction = prediction_type::v_prediction;
  } else {
    config.refuse("prediction_type", "supported: epsilon, v_prediction");
  }

  const std::string spacing =
      config.text("timestep_spacing", timestep_spacing_name(class_default_spacing));
  if (auto parsed = parse_timestep_spacing(spacing)) {
    options.spacing = *parsed;
  } else {
    config.refuse("timestep_spacing", "supported: leading, linspace, trailing");
  }
  options.steps_offset = config.integer("steps_offset", 0);
  return options;
}

noise_schedule_options noise_schedule_options_from(const scheduler_config& config) {
  auto it = known_classes().find(config.class_name());
  if (it == known_classes().end())
    config.refuse("_class_name",
                  "unknown scheduler class (known: DDPMScheduler, DDIMScheduler, PNDMScheduler, "
                  "LMSDiscreteScheduler, EulerDiscreteScheduler, "
                  "EulerAncestralDiscreteScheduler, DPMSolverMultistepScheduler, "
                  "UniPCMultistepScheduler)");
  return noise_schedule_options_from(config, it->second);
}

noise_schedule::noise_schedule(const noise_schedule_options& options) : options_(options) {
  if (options_.num_train_timesteps < 1)
    throw std::invalid_argument("noise_schedule: num_train_timesteps must be positive");
  const int64_t steps = options_.num_train_timesteps;
  switch (options_.betas) {
    case beta_schedule::linear:
      betas_ = torch::linspace(options_.beta_start, options_.beta_end, steps, torch::kFloat32);
      break;
    case beta_schedule::scaled_linear:
      betas_ = torch::linspace(std::pow(options_.beta_start, 0.5), std::pow(options_.beta_end, 0.5),
                               steps, torch::kFloat32)
                   .pow(2);
      break;
    case beta_schedule::squaredcos_cap_v2:
      betas_ = cosine_betas(steps);
      break;
  }
  alphas_ = 1.0 - betas_;
  alphas_cumprod_ = torch::cumprod(alphas_, 0);
}

std::pair<torch::Tensor, torch::Tensor> noise_schedule::signal_and_noise_scales(
    const torch::Tensor& timesteps, const torch::Tensor& like) const {
  const auto alphas_cumprod = alphas_cumprod_.to(like.device(), like.scalar_type());
  const auto at = alphas_cumprod.index({timesteps.to(like.device())});
  return {broadcast_over(at.pow(0.5), like), broadcast_over((1 - at).pow(0.5), like)};
}

torch::Tensor noise_schedule::add_noise(const torch::Tensor& original, const torch::Tensor& noise,
                                        const torch::Tensor& timesteps) const {
  const auto [signal, noise_scale] = signal_and_noise_scales(timesteps, original);
  return signal * original + noise_scale * noise;
}

torch::Tensor noise_schedule::velocity(const torch::Tensor& original, const torch::Tensor& noise,
                                       const torch::Tensor& timesteps) const {
  const auto [signal, noise_scale] = signal_and_noise_scales(timesteps, original);
  return signal * noise - noise_scale * original;
}

torch::Tensor noise_schedule::training_target(const torch::Tensor& original,
                                              const torch::Tensor& noise,
                                              const torch::Tensor& timesteps) const {
  switch (options_.prediction) {
    case prediction_type::epsilon: return noise;
    case prediction_type::v_prediction: return velocity(original, noise, timesteps);
  }
  return noise;
}

torch::Tensor noise_schedule::snr(const torch::Tensor& timesteps) const {
  const auto index = timesteps.to(torch::kLong);
  const auto signal =
      alphas_cumprod_.pow(0.5).to(timesteps.device()).index({index}).to(torch::kFloat32);
  const auto noise_scale =
      (1.0 - alphas_cumprod_).pow(0.5).to(timesteps.device()).index({index}).to(torch::kFloat32);
  return (signal / noise_scale).pow(2);
}

std::vector<int64_t> noise_schedule::inference_timesteps(int64_t steps) const {
  return ddim_timesteps(options_.grid(), steps);
}

} // namespace ddactor
