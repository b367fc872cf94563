// DDIM, EulerDiscrete and DPM-Solver++(2M) as diffusers v0.25.1 computes them, and the sampling
// loop; see latent_samplers.hpp. Scalars such as abar_t and sigma stay 0-dim float32 tensors and
// every expression keeps diffusers' order of operations, so that float32 rounding matches too.
#include "models/sd/latent_samplers.hpp"

#include <cmath>
#include <limits>
#include <stdexcept>

namespace ddactor {

namespace {

void refuse_thresholding(const scheduler_config& config) {
  if (config.flag("thresholding", false))
    config.refuse("thresholding", "dynamic thresholding is not supported");
}

// diffusers' _init_step_index: the position of `timestep` in `timesteps`; the second where it
// occurs twice (image-to-image starts between two equal timesteps). nullopt where it is absent.
std::optional<int64_t> position_of(const torch::Tensor& timesteps, const torch::Tensor& timestep) {
  const auto matches = (timesteps == timestep.to(timesteps.device())).nonzero();
  if (matches.size(0) == 0) return std::nullopt;
  return matches[matches.size(0) > 1 ? 1 : 0][0].item<int64_t>();
}

// np.interp(x, arange(n), values) for x in [0, n-1], in float64 as numpy computes it.
double interpolate_on_unit_grid(const std::vector<double>& values, double x) {
  const auto last = static_cast<int64_t>(values.size()) - 1;
  const auto j = static_cast<int64_t>(std::floor(x));
  if (j >= last) return values[last];
  if (static_cast<double>(j) == x) return values[j];
  const double slope = (values[j + 1] - values[j]) / 1.0;
  return slope * (x - static_cast<double>(j)) + values[j];
}

// sigma = sqrt((1 - abar) / abar) at every training timestep, float32 as diffusers computes it.
torch::Tensor training_sigmas(const noise_schedule& schedule) {
  const auto& alphas_cumprod = schedule.alphas_cumprod();
  return ((1 - alphas_cumprod) / alphas_cumprod).pow(0.5);
}

std::vector<double> as_doubles(const torch::Tensor& tensor) {
  const auto t = tensor.to(torch::kFloat64).contiguous();
  return {t.data_ptr<double>(), t.data_ptr<double>() + t.numel()};
}

// DPM-Solver's (alpha_t, sigma_t) of a noise level: 1 / sqrt(sigma^2 + 1) and sigma times that.
std::pair<torch::Tensor, torch::Tensor> alpha_sigma_of(const torch::Tensor& sigma) {
  auto alpha = 1 / (sigma.pow(2) + 1).pow(0.5);
  auto sigma_t = sigma * alpha;
  return {alpha, sigma_t};
}

torch::Tensor log_snr(const torch::Tensor& alpha, const torch::Tensor& sigma) {
  return torch::log(alpha) - torch::log(sigma);
}

} // namespace

// --- DDIM ---------------------------------------------------------------------------------

ddim_options ddim_options_from(const scheduler_config& config) {
  ddim_options options;
  options.schedule = noise_schedule_options_from(config, timestep_spacing::leading);
  options.clip_sample = config.flag("clip_sample", true);
  options.clip_sample_range = config.number("clip_sample_range", 1.0);
  options.set_alpha_to_one = config.flag("set_alpha_to_one", true);
  refuse_thresholding(config);
  return options;
}

ddim_sampler::ddim_sampler(const ddim_options& options)
  : options_(options), schedule_(options.schedule) {
  final_alpha_cumprod_ = options_.set_alpha_to_one ? torch::tensor(1.0f)
                                                   : schedule_.alphas_cumprod()[0];
}

void ddim_sampler::set_timesteps(int64_t steps) {
  timesteps_ = torch::tensor(ddim_timesteps(options_.schedule.grid(), steps), torch::kInt64);
  num_inference_steps_ = steps;
}

latent_step ddim_sampler::step(const torch::Tensor& model_output, const torch::Tensor& timestep,
                               const torch::Tensor& sample) {
  if (num_inference_steps_ == 0) throw std::logic_error("DDIM step before set_timesteps");
  const int64_t t = timestep.item<int64_t>();
  const int64_t train_steps = schedule_.num_train_timesteps();
  if (t < 0 || t >= train_steps)
    throw std::invalid_argument("DDIM step: timestep " + std::to_string(t) + " out of range");
  const int64_t prev_t = t - train_steps / num_inference_steps_;
  const auto& alphas_cumprod = schedule_.alphas_cumprod();
  const auto alpha_prod_t = alphas_cumprod[t];
  const auto alpha_prod_t_prev = prev_t >= 0 ? alphas_cumprod[prev_t] : final_alpha_cumprod_;
  const auto beta_prod_t = 1 - alpha_prod_t;

  torch::Tensor pred_original_sample;
  torch::Tensor pred_epsilon;
  switch (options_.schedule.prediction) {
    case prediction_type::epsilon:
      pred_original_sample = (sample - beta_prod_t.pow(0.5) * model_output) / alpha_prod_t.pow(0.5);
      pred_epsilon = model_output;
      break;
    case prediction_type::v_prediction:
      pred_original_sample = alpha_prod_t.pow(0.5) * sample - beta_prod_t.pow(0.5) * model_output;
      pred_epsilon = alpha_prod_t.pow(0.5) * model_output + beta_prod_t.pow(0.5) * sample;
      break;
  }
  if (options_.clip_sample)
    pred_original_sample =
        pred_original_sample.clamp(-options_.clip_sample_range, options_.clip_sample_range);
  // eta = 0: no noise is added, so the direction to x_t keeps all of 1 - abar_prev.
  const auto pred_sample_direction = (1 - alpha_prod_t_prev).pow(0.5) * pred_epsilon;
  auto prev_sample = alpha_prod_t_prev.pow(0.5) * pred_original_sample + pred_sample_direction;
  return {std::move(prev_sample), std::move(pred_original_sample)};
}

// --- EulerDiscrete ------------------------------------------------------------------------

euler_discrete_options euler_discrete_options_from(const scheduler_config& config) {
  euler_discrete_options options;
  options.schedule = noise_schedule_options_from(config, timestep_spacing::linspace);
  if (config.text("interpolation_type", "linear") != "linear")
    config.refuse("interpolation_type", "only \"linear\" is supported");
  if (config.flag("use_karras_sigmas", false))
    config.refuse("use_karras_sigmas", "Karras sigmas are not supported");
  if (config.text("timestep_type", "discrete") != "discrete")
    config.refuse("timestep_type", "only \"discrete\" is supported");
  return options;
}

euler_discrete_sampler::euler_discrete_sampler(const euler_discrete_options& options)
  : options_(options), schedule_(options.schedule) {
  // Before set_timesteps diffusers holds the whole training grid; init_noise_sigma reads it.
  const int64_t train_steps = schedule_.num_train_timesteps();
  timesteps_ = torch::linspace(0, static_cast<double>(train_steps - 1), train_steps,
                               torch::kFloat64)
                   .flip(0)
                   .to(torch::kFloat32);
  sigmas_ = torch::cat({training_sigmas(schedule_).flip(0), torch::zeros({1})});
}

void euler_discrete_sampler::set_timesteps(int64_t steps) {
  const std::vector<float> timesteps = euler_timesteps(options_.schedule.grid(), steps);
  // np.interp of the training sigmas at the (fractional) timesteps, float64, then float32.
  const std::vector<double> train_sigmas = as_doubles(training_sigmas(schedule_));
  std::vector<double> sigmas;
  for (float t : timesteps) sigmas.push_back(interpolate_on_unit_grid(train_sigmas, t));
  timesteps_ = torch::tensor(timesteps, torch::kFloat32);
  sigmas_ = torch::cat({torch::tensor(sigmas, torch::kFloat64).to(torch::kFloat32),
                        torch::zeros({1})});
  step_index_.reset();
}

double euler_discrete_sampler::init_noise_sigma() const {
  const auto max_sigma = sigmas_.max();
  const auto spacing = options_.schedule.spacing;
  if (spacing == timestep_spacing::linspace || spacing == timestep_spacing::trailing)
    return max_sigma.item<double>();
  return (max_sigma.pow(2) + 1).pow(0.5).item<double>();
}

int64_t euler_discrete_sampler::current_step_index(const torch::Tensor& timestep) {
  if (!step_index_) {
    step_index_ = position_of(timesteps_, timestep);
    if (!step_index_)
      throw std::invalid_argument("Euler: timestep " + std::to_string(timestep.item<double>()) +
                                  " is not one of timesteps()");
  }
  if (*step_index_ + 1 >= sigmas_.size(0))
    throw std::logic_error("Euler: every step of this run is taken; call set_timesteps");
  return *step_index_;
}

torch::Tensor euler_discrete_sampler::scale_model_input(const torch::Tensor& sample,
                                                        const torch::Tensor& timestep) {
  const auto sigma = sigmas_[current_step_index(timestep)];
  return sample / (sigma.pow(2) + 1).pow(0.5);
}

latent_step euler_discrete_sampler::step(const torch::Tensor& model_output,
                                         const torch::Tensor& timestep,
                                         const torch::Tensor& sample_in) {
  const int64_t index = current_step_index(timestep);
  const auto sample = sample_in.to(torch::kFloat32);
  // s_churn = 0: no noise is added, sigma_hat = sigma.
  const auto sigma = sigmas_[index];
  torch::Tensor pred_original_sample;
  switch (options_.schedule.prediction) {
    case prediction_type::epsilon:
      pred_original_sample = sample - sigma * model_output;
      break;
    case prediction_type::v_prediction:
      pred_original_sample =
          model_output * (-sigma / (sigma.pow(2) + 1).pow(0.5)) + (sample / (sigma.pow(2) + 1));
      break;
  }
  const auto derivative = (sample - pred_original_sample) / sigma;
  const auto dt = sigmas_[index + 1] - sigma;
  auto prev_sample = (sample + derivative * dt).to(model_output.scalar_type());
  step_index_ = index + 1;
  return {std::move(prev_sample), std::move(pred_original_sample)};
}

// --- DPM-Solver++(2M) ---------------------------------------------------------------------

dpm_solver_multistep_options dpm_solver_multistep_options_from(const scheduler_config& config) {
  dpm_solver_multistep_options options;
  options.schedule = noise_schedule_options_from(config, timestep_spacing::linspace);
  options.solver_order = config.integer("solver_order", 2);
  if (options.solver_order != 1 && options.solver_order != 2)
    config.refuse("solver_order", "supported: 1, 2");
  if (config.text("algorithm_type", "dpmsolver++") != "dpmsolver++")
    config.refuse("algorithm_type", "only \"dpmsolver++\" is supported");
  if (config.text("solver_type", "midpoint") != "midpoint")
    config.refuse("solver_type", "only \"midpoint\" is supported");
  options.lower_order_final = config.flag("lower_order_final", true);
  options.euler_at_final = config.flag("euler_at_final", false);
  if (config.flag("use_karras_sigmas", false))
    config.refuse("use_karras_sigmas", "Karras sigmas are not supported");
  if (config.flag("use_lu_lambdas", false))
    config.refuse("use_lu_lambdas", "Lu lambdas are not supported");
  const double lambda_min_clipped =
      config.number("lambda_min_clipped", -std::numeric_limits<double>::infinity());
  if (!(std::isinf(lambda_min_clipped) && lambda_min_clipped < 0))
    config.refuse("lambda_min_clipped", "only -Infinity (no clipping) is supported");
  if (!config.is_unset("variance_type"))
    config.refuse("variance_type", "learned variances are not supported");
  refuse_thresholding(config);
  return options;
}

dpm_solver_multistep_sampler::dpm_solver_multistep_sampler(
    const dpm_solver_multistep_options& options)
  : options_(options), schedule_(options.schedule) {}

void dpm_solver_multistep_sampler::set_timesteps(int64_t steps) {
  const std::vector<int64_t> timesteps = dpm_solver_timesteps(options_.schedule.grid(), steps);
  timesteps_ = torch::tensor(timesteps, torch::kInt64);
  // np.interp at integer timesteps is the training sigma itself; the final noise level is that
  // of timestep 0.
  const auto train_sigmas = training_sigmas(schedule_);
  const auto alpha_cumprod_0 = schedule_.alphas_cumprod()[0];
  const auto sigma_last = ((1 - alpha_cumprod_0) / alpha_cumprod_0).pow(0.5);
  sigmas_ = torch::cat({train_sigmas.index({timesteps_}), sigma_last.reshape({1})});
  step_index_.reset();
  x0_history_.assign(static_cast<size_t>(options_.solver_order), torch::Tensor());
  lower_order_steps_ = 0;
  last_solver_order_ = 0;
}

torch::Tensor dpm_solver_multistep_sampler::data_prediction(const torch::Tensor& model_output,
                                                            const torch::Tensor& sample,
                                                            int64_t index) const {
  const auto [alpha_t, sigma_t] = alpha_sigma_of(sigmas_[index]);
  switch (options_.schedule.prediction) {
    case prediction_type::epsilon: return (sample - sigma_t * model_output) / alpha_t;
    case prediction_type::v_prediction: return alpha_t * sample - sigma_t * model_output;
  }
  return model_output;
}

torch::Tensor dpm_solver_multistep_sampler::first_order_update(const torch::Tensor& x0,
                                                               const torch::Tensor& sample,
                                                               int64_t index) const {
  const auto [alpha_t, sigma_t] = alpha_sigma_of(sigmas_[index + 1]);
  const auto [alpha_s, sigma_s] = alpha_sigma_of(sigmas_[index]);
  const auto h = log_snr(alpha_t, sigma_t) - log_snr(alpha_s, sigma_s);
  return (sigma_t / sigma_s) * sample - (alpha_t * (torch::exp(-h) - 1.0)) * x0;
}

torch::Tensor dpm_solver_multistep_sampler::second_order_update(const torch::Tensor& sample,
                                                                int64_t index) const {
  const auto [alpha_t, sigma_t] = alpha_sigma_of(sigmas_[index + 1]);
  const auto [alpha_s0, sigma_s0] = alpha_sigma_of(sigmas_[index]);
  const auto [alpha_s1, sigma_s1] = alpha_sigma_of(sigmas_[index - 1]);
  const auto lambda_t = log_snr(alpha_t, sigma_t);
  const auto lambda_s0 = log_snr(alpha_s0, sigma_s0);
  const auto lambda_s1 = log_snr(alpha_s1, sigma_s1);
  const auto& m0 = x0_history_.back();
  const auto& m1 = x0_history_[x0_history_.size() - 2];
  const auto h = lambda_t - lambda_s0;
  const auto h_0 = lambda_s0 - lambda_s1;
  const auto r0 = h_0 / h;
  const auto& d0 = m0;
  const auto d1 = (1.0 / r0) * (m0 - m1);
  // The midpoint form of DPM-Solver++(2M).
  return (sigma_t / sigma_s0) * sample - (alpha_t * (torch::exp(-h) - 1.0)) * d0 -
         0.5 * (alpha_t * (torch::exp(-h) - 1.0)) * d1;
}

latent_step dpm_solver_multistep_sampler::step(const torch::Tensor& model_output,
                                               const torch::Tensor& timestep,
                                               const torch::Tensor& sample) {
  if (!timesteps_.defined()) throw std::logic_error("DPM-Solver step before set_timesteps");
  const int64_t steps = timesteps_.size(0);
  if (!step_index_) {
    // An unknown timestep starts at the last step, as diffusers does.
    step_index_ = position_of(timesteps_, timestep).value_or(steps - 1);
  }
  const int64_t index = *step_index_;
  if (index >= steps)
    throw std::logic_error("DPM-Solver: every step of this run is taken; call set_timesteps");

  // Below 15 steps the last step is first order, which is steadier. (diffusers' matching rule
  // for the step before the last lowers third order to second; with orders 1 and 2 it never
  // applies.)
  const bool few_steps = options_.lower_order_final && steps < 15;
  const bool first_order_final = index == steps - 1 && (options_.euler_at_final || few_steps);

  auto x0 = data_prediction(model_output, sample, index);
  x0_history_.erase(x0_history_.begin());
  x0_history_.push_back(x0);

  torch::Tensor prev_sample;
  if (options_.solver_order == 1 || lower_order_steps_ < 1 || first_order_final) {
    prev_sample = first_order_update(x0, sample, index);
    last_solver_order_ = 1;
  } else {
    prev_sample = second_order_update(sample, index);
    last_solver_order_ = 2;
  }
  if (lower_order_steps_ < options_.solver_order) ++lower_order_steps_;
  step_index_ = index + 1;
  return {std::move(prev_sample), std::move(x0)};
}

// --- choosing and running -----------------------------------------------------------------

std::optional<latent_sampler_kind> latent_sampler_kind_of(std::string_view class_name) {
  if (class_name == "DDIMScheduler") return latent_sampler_kind::ddim;
  if (class_name == "EulerDiscreteScheduler") return latent_sampler_kind::euler_discrete;
  if (class_name == "DPMSolverMultistepScheduler") return latent_sampler_kind::dpm_solver_multistep;
  return std::nullopt;
}

std::unique_ptr<latent_sampler> make_latent_sampler(const scheduler_config& config) {
  const auto kind = latent_sampler_kind_of(config.class_name());
  if (!kind)
    config.refuse("_class_name",
                  "no sampler for this class (there are DDIMScheduler, EulerDiscreteScheduler, "
                  "DPMSolverMultistepScheduler; make_latent_sampler(kind, config) builds one "
                  "of them from this config)");
  return make_latent_sampler(*kind, config);
}

std::unique_ptr<latent_sampler> make_latent_sampler(latent_sampler_kind kind,
                                                    const scheduler_config& config) {
  switch (kind) {
    case latent_sampler_kind::ddim:
      return std::make_unique<ddim_sampler>(ddim_options_from(config));
    case latent_sampler_kind::euler_discrete:
      return std::make_unique<euler_discrete_sampler>(euler_discrete_options_from(config));
    case latent_sampler_kind::dpm_solver_multistep:
      return std::make_unique<dpm_solver_multistep_sampler>(
          dpm_solver_multistep_options_from(config));
  }
  throw std::invalid_argument("unknown latent_sampler_kind");
}

sampling_result sample_latents(latent_sampler& sampler, const latent_denoiser& model,
                               const torch::Tensor& noise, int64_t steps,
                               const sampling_callbacks& callbacks) {
  torch::NoGradGuard no_grad;
  sampler.set_timesteps(steps);
  const auto timesteps = sampler.timesteps();
  const int64_t total = timesteps.size(0);
  sampling_result result;
  result.latents = noise * sampler.init_noise_sigma();
  for (int64_t i = 0; i < total; ++i) {
    if (callbacks.stop_requested && callbacks.stop_requested()) {
      result.outcome = sampling_outcome::stopped;
      return result;
    }
    const auto t = timesteps[i];
    const auto model_input = sampler.scale_model_input(result.latents, t);
    result.latents = sampler.step(model(model_input, t), t, result.latents).prev_sample;
    result.steps_done = i + 1;
    if (callbacks.on_progress) callbacks.on_progress(result.steps_done, total);
  }
  return result;
}

} // namespace ddactor
