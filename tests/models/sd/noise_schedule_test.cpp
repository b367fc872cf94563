// Tests of the DDPM noise schedule: the diffusers v0.25.1 fixtures (SD 1.x config, epsilon and
// v_prediction: betas, alphas, alphas_cumprod, add_noise, get_velocity, the training target, the
// 20 inference timesteps), SNR against its closed form, the linear and cosine beta schedules,
// and the options a scheduler_config.json gives (class defaults, clear errors).
#include "models/sd/noise_schedule.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <numbers>

#include "scheduler_fixtures.hpp"

namespace ddactor {
namespace {

namespace fixtures = scheduler_fixtures;

class noise_schedule_fixture : public ::testing::TestWithParam<std::string> {};

TEST_P(noise_schedule_fixture, matches_diffusers_ddpm_training_side) {
  SKIP_WITHOUT_SCHEDULER_FIXTURES();
  const std::string prediction = GetParam();
  const auto folder = fixtures::root / prediction / "ddpm";
  const auto config = scheduler_config::load(folder);
  EXPECT_EQ(config.class_name(), "DDPMScheduler");
  const noise_schedule schedule(noise_schedule_options_from(config));
  EXPECT_EQ(schedule.options().prediction, prediction == "epsilon"
                                                ? prediction_type::epsilon
                                                : prediction_type::v_prediction);
  auto expected = fixtures::read_tensors(folder / "training.safetensors");

  fixtures::error_record errors(prediction + "/ddpm (betas, alphas, alphas_cumprod, add_noise, "
                                             "velocity, target)");
  errors.check(schedule.betas(), expected["betas"], "betas");
  errors.check(schedule.alphas(), expected["alphas"], "alphas");
  errors.check(schedule.alphas_cumprod(), expected["alphas_cumprod"], "alphas_cumprod");
  const auto& x0 = expected["original_samples"];
  const auto& noise = expected["noise"];
  const auto& t = expected["timesteps"];
  errors.check(schedule.add_noise(x0, noise, t), expected["noisy_samples"], "add_noise");
  errors.check(schedule.velocity(x0, noise, t), expected["velocity"], "velocity");
  errors.check(schedule.training_target(x0, noise, t), expected["target"], "target");

  const auto inference = expected["inference_timesteps_20"];
  const auto ours = schedule.inference_timesteps(20);
  EXPECT_EQ(ours, std::vector<int64_t>(inference.data_ptr<int64_t>(),
                                       inference.data_ptr<int64_t>() + inference.numel()));
}

INSTANTIATE_TEST_SUITE_P(noise_schedule, noise_schedule_fixture,
                         ::testing::Values("epsilon", "v_prediction"));

TEST(noise_schedule, snr_is_alphas_cumprod_over_its_complement) {
  noise_schedule_options options;
  options.beta_start = 0.00085;
  options.beta_end = 0.012;
  options.betas = beta_schedule::scaled_linear;
  const noise_schedule schedule(options);
  const auto t = torch::tensor({0, 1, 10, 250, 500, 999}, torch::kInt64);
  const auto abar = schedule.alphas_cumprod().index({t}).to(torch::kFloat64);
  const auto snr = schedule.snr(t);
  EXPECT_EQ(snr.scalar_type(), torch::kFloat32);
  EXPECT_LE(fixtures::relative_error(snr, abar / (1 - abar)), 1e-5);
  // Falls from ~1176 at t = 0 to ~0.0047 at t = 999.
  EXPECT_GT(snr[0].item<double>(), 1000);
  EXPECT_LT(snr[5].item<double>(), 0.005);
}

TEST(noise_schedule, linear_and_cosine_betas) {
  const noise_schedule linear{noise_schedule_options{}};
  EXPECT_NEAR(linear.betas()[0].item<double>(), 0.0001, 1e-9);
  EXPECT_NEAR(linear.betas()[999].item<double>(), 0.02, 1e-9);

  noise_schedule_options cosine_options;
  cosine_options.betas = beta_schedule::squaredcos_cap_v2;
  const noise_schedule cosine(cosine_options);
  auto alpha_bar = [](double t) {
    return std::pow(std::cos((t + 0.008) / 1.008 * std::numbers::pi / 2), 2.0);
  };
  EXPECT_FLOAT_EQ(cosine.betas()[0].item<float>(),
                  static_cast<float>(1 - alpha_bar(0.001) / alpha_bar(0.0)));
  EXPECT_FLOAT_EQ(cosine.betas()[999].item<float>(), 0.999f);  // capped
}

TEST(noise_schedule, training_target_of_epsilon_and_v_prediction) {
  noise_schedule_options options;
  const auto x0 = torch::randn({2, 4, 3, 3});
  const auto noise = torch::randn({2, 4, 3, 3});
  const auto t = torch::tensor({3, 700}, torch::kInt64);
  EXPECT_TRUE(torch::equal(noise_schedule(options).training_target(x0, noise, t), noise));
  options.prediction = prediction_type::v_prediction;
  const noise_schedule v(options);
  // v = sqrt(abar) noise - sqrt(1 - abar) x0, so sqrt(abar) x_t - sqrt(1 - abar) v = x0.
  const auto abar = v.alphas_cumprod().index({t}).view({2, 1, 1, 1});
  const auto recovered =
      abar.sqrt() * v.add_noise(x0, noise, t) - (1 - abar).sqrt() * v.training_target(x0, noise, t);
  EXPECT_LE(fixtures::relative_error(recovered, x0), 1e-5);
}

TEST(noise_schedule, keys_a_config_lacks_take_the_class_defaults) {
  const auto config = scheduler_config::parse(
      R"({"_class_name": "EulerDiscreteScheduler", "beta_end": 0.012})", "test config");
  // Euler spaces by linspace, DDIM by leading; the betas default to diffusers' 1e-4 .. 0.02.
  const auto euler = noise_schedule_options_from(config);
  EXPECT_EQ(euler.spacing, timestep_spacing::linspace);
  EXPECT_EQ(euler.beta_end, 0.012);
  EXPECT_EQ(euler.beta_start, 0.0001);
  EXPECT_EQ(euler.betas, beta_schedule::linear);
  EXPECT_EQ(euler.prediction, prediction_type::epsilon);
  EXPECT_EQ(noise_schedule_options_from(config, timestep_spacing::leading).spacing,
            timestep_spacing::leading);
  const auto pndm = scheduler_config::parse(R"({"_class_name": "PNDMScheduler"})", "pndm");
  EXPECT_EQ(noise_schedule_options_from(pndm).spacing, timestep_spacing::leading);
}

// The message of the scheduler_config_error that `f` throws ("" if none).
template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const scheduler_config_error& e) {
    return e.what();
  }
  return "";
}

TEST(noise_schedule, unsupported_config_values_are_refused_naming_the_key) {
  auto options_of = [](const std::string& json) {
    return [json] { noise_schedule_options_from(scheduler_config::parse(json, "cfg")); };
  };
  EXPECT_EQ(error_of(options_of(R"({"_class_name": "KarrasVeScheduler"})")).find(
                "cfg: _class_name = \"KarrasVeScheduler\": unknown scheduler class"),
            0u);
  EXPECT_EQ(
      error_of(options_of(R"({"_class_name": "DDPMScheduler", "prediction_type": "sample"})")),
      "cfg: prediction_type = \"sample\": supported: epsilon, v_prediction");
  EXPECT_EQ(error_of(options_of(R"({"_class_name": "DDPMScheduler", "trained_betas": [0.1]})")),
            "cfg: trained_betas = [0.1]: not supported (betas come from beta_schedule)");
  EXPECT_EQ(error_of(options_of(R"({"_class_name": "DDPMScheduler", "beta_schedule": "sigmoid"})"))
                .find("cfg: beta_schedule = \"sigmoid\""),
            0u);
  EXPECT_EQ(error_of(options_of(R"({"_class_name": "DDPMScheduler", "steps_offset": "1"})")),
            "cfg: steps_offset = \"1\": expected an integer");
  EXPECT_EQ(
      error_of(options_of(R"({"_class_name": "DDIMScheduler", "rescale_betas_zero_snr": true})")),
      "cfg: rescale_betas_zero_snr = true: not supported");
}

} // namespace
} // namespace ddactor
