// Tests of the DDIM, EulerDiscrete and DPM-Solver++(2M) samplers against the diffusers v0.25.1
// fixtures: for epsilon and v_prediction, the 20 timesteps, sigmas and init_noise_sigma, then
// each of the 20 steps alone (scale_model_input, prev_sample, the x0 estimate, DPM-Solver's
// order) from the stored inputs, then the whole loop through sample_latents with the fixtures'
// stand-in model. Then what no fixture covers: building one class from another's config,
// cancelling and progress, misuse, unsupported options.
#include "models/sd/latent_samplers.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fstream>

#include "scheduler_fixtures.hpp"

namespace ddactor {
namespace {

namespace fixtures = scheduler_fixtures;

// The stand-in for the UNet the fixtures were made with (index.json "fake_model").
torch::Tensor fake_model(const torch::Tensor& model_input, const torch::Tensor& t) {
  return 0.1 * model_input + 0.05 * torch::sin(t.to(torch::kFloat32));
}

nlohmann::json read_index() {
  std::ifstream in(fixtures::root / "index.json");
  return nlohmann::json::parse(in);
}

struct sampler_case {
  std::string prediction;  // "epsilon" or "v_prediction"
  std::string folder;      // "ddim", "euler_discrete", "dpmsolver_multistep"
};

std::string case_name(const ::testing::TestParamInfo<sampler_case>& info) {
  return info.param.prediction + "_" + info.param.folder;
}

class latent_sampler_fixture : public ::testing::TestWithParam<sampler_case> {
protected:
  void SetUp() override {
    if (!fixtures::present()) return;
    folder_ = fixtures::root / GetParam().prediction / GetParam().folder;
    expected_ = fixtures::read_tensors(folder_ / "sampling.safetensors");
    index_entry_ = read_index()["sets"][GetParam().prediction][GetParam().folder];
  }
  std::string group() const { return GetParam().prediction + "/" + GetParam().folder; }

  std::filesystem::path folder_;
  std::map<std::string, torch::Tensor> expected_;
  nlohmann::json index_entry_;
};

TEST_P(latent_sampler_fixture, timesteps_sigmas_and_init_noise_sigma) {
  SKIP_WITHOUT_SCHEDULER_FIXTURES();
  auto sampler = make_latent_sampler(scheduler_config::load(folder_));
  EXPECT_EQ(sampler->class_name(), index_entry_["class"].get<std::string>());
  sampler->set_timesteps(20);
  const auto& timesteps = expected_["timesteps"];
  EXPECT_EQ(sampler->timesteps().scalar_type(), timesteps.scalar_type());
  EXPECT_TRUE(torch::equal(sampler->timesteps(), timesteps))
      << sampler->timesteps() << "\nvs\n" << timesteps;
  fixtures::error_record errors(group() + " (sigmas, alphas_cumprod, init_noise_sigma)");
  errors.check(sampler->schedule().alphas_cumprod(), expected_["alphas_cumprod"], "alphas_cumprod");
  errors.check(torch::tensor(sampler->init_noise_sigma()),
               torch::tensor(index_entry_["init_noise_sigma"].get<double>()), "init_noise_sigma");
  errors.check(expected_["init_noise"] * sampler->init_noise_sigma(), expected_["latents_init"],
               "latents_init");
  if (auto* euler = dynamic_cast<euler_discrete_sampler*>(sampler.get()))
    errors.check(euler->sigmas(), expected_["sigmas"], "sigmas");
  if (auto* dpm = dynamic_cast<dpm_solver_multistep_sampler*>(sampler.get()))
    errors.check(dpm->sigmas(), expected_["sigmas"], "sigmas");
}

// Each step from the stored input sample and model output, so that one step's error cannot
// hide in the next.
TEST_P(latent_sampler_fixture, every_step_alone_matches_diffusers) {
  SKIP_WITHOUT_SCHEDULER_FIXTURES();
  auto sampler = make_latent_sampler(scheduler_config::load(folder_));
  auto* dpm = dynamic_cast<dpm_solver_multistep_sampler*>(sampler.get());
  sampler->set_timesteps(20);
  const auto& timesteps = sampler->timesteps();
  const auto& x0_key = dpm ? "x0_pred" : "pred_original_sample";
  fixtures::error_record errors(group() + " steps (model_input, prev_sample, " + x0_key + ")");
  for (int64_t i = 0; i < 20; ++i) {
    SCOPED_TRACE("step " + std::to_string(i));
    const auto sample = i == 0 ? expected_["latents_init"] : expected_["prev_sample"][i - 1];
    const auto t = timesteps[i];
    errors.check(sampler->scale_model_input(sample, t), expected_["model_input"][i],
                 "model_input");
    const auto out = sampler->step(expected_["model_output"][i], t, sample);
    errors.check(out.prev_sample, expected_["prev_sample"][i], "prev_sample");
    errors.check(out.pred_original_sample, expected_[x0_key][i], x0_key);
    if (dpm) {
      EXPECT_EQ(dpm->last_solver_order(), expected_["solver_order_used"][i].item<int64_t>());
    }
  }
}

// The whole loop as the pipeline runs it, with the stand-in model computed here.
TEST_P(latent_sampler_fixture, sample_latents_runs_the_pipeline_loop) {
  SKIP_WITHOUT_SCHEDULER_FIXTURES();
  auto sampler = make_latent_sampler(scheduler_config::load(folder_));
  std::vector<int64_t> progress;
  sampling_callbacks callbacks;
  callbacks.on_progress = [&](int64_t done, int64_t total) {
    EXPECT_EQ(total, 20);
    progress.push_back(done);
  };
  const auto result = sample_latents(*sampler, fake_model, expected_["init_noise"], 20, callbacks);
  EXPECT_EQ(result.outcome, sampling_outcome::completed);
  EXPECT_EQ(result.steps_done, 20);
  EXPECT_EQ(progress.size(), 20u);
  EXPECT_EQ(progress.back(), 20);
  fixtures::error_record errors(group() + " 20-step loop (final latents)");
  errors.check(result.latents, expected_["prev_sample"][19], "final latents");
}

INSTANTIATE_TEST_SUITE_P(
    latent_samplers, latent_sampler_fixture,
    ::testing::Values(sampler_case{"epsilon", "ddim"}, sampler_case{"epsilon", "euler_discrete"},
                      sampler_case{"epsilon", "dpmsolver_multistep"},
                      sampler_case{"v_prediction", "ddim"},
                      sampler_case{"v_prediction", "euler_discrete"},
                      sampler_case{"v_prediction", "dpmsolver_multistep"}),
    case_name);

// The fixtures' samplers were built as Cls.from_config(SD 1.x config): that config, which names
// no spacing, gives each class its own default spacing.
TEST(latent_samplers, a_class_built_from_another_config_takes_its_own_defaults) {
  SKIP_WITHOUT_SCHEDULER_FIXTURES();
  const auto index = read_index();
  auto sd1 = index["sd1_config"];
  sd1["_class_name"] = "PNDMScheduler";  // what SD 1.x checkpoints ship
  const auto config = scheduler_config::parse(sd1.dump(), "sd1 config");
  for (auto [kind, folder] : {std::pair{latent_sampler_kind::ddim, "ddim"},
                              std::pair{latent_sampler_kind::euler_discrete, "euler_discrete"},
                              std::pair{latent_sampler_kind::dpm_solver_multistep,
                                        "dpmsolver_multistep"}}) {
    auto sampler = make_latent_sampler(kind, config);
    sampler->set_timesteps(20);
    const auto expected =
        fixtures::read_tensors(fixtures::root / "epsilon" / folder / "sampling.safetensors");
    EXPECT_TRUE(torch::equal(sampler->timesteps(), expected.at("timesteps"))) << folder;
  }
  EXPECT_THROW(make_latent_sampler(config), scheduler_config_error);  // no PNDM sampler
}

TEST(latent_samplers, a_stop_request_ends_the_run_between_steps) {
  ddim_sampler sampler(ddim_options{});
  int asked = 0;
  sampling_callbacks callbacks;
  callbacks.stop_requested = [&] { return ++asked > 5; };
  const auto noise = torch::randn({1, 4, 8, 8});
  const auto stopped = sample_latents(sampler, fake_model, noise, 20, callbacks);
  EXPECT_EQ(stopped.outcome, sampling_outcome::stopped);
  EXPECT_EQ(stopped.steps_done, 5);
  // The latents reached after five steps, as five steps of a fresh run give them.
  ddim_sampler again(ddim_options{});
  again.set_timesteps(20);
  auto latents = noise.clone();
  for (int64_t i = 0; i < 5; ++i) {
    const auto t = again.timesteps()[i];
    latents = again.step(fake_model(latents, t), t, latents).prev_sample;
  }
  EXPECT_TRUE(torch::equal(stopped.latents, latents));
}

TEST(latent_samplers, misuse_is_an_error_not_a_wrong_sample) {
  const auto x = torch::zeros({1, 4, 2, 2});
  ddim_sampler ddim(ddim_options{});
  EXPECT_THROW(ddim.step(x, torch::tensor(1), x), std::logic_error);
  EXPECT_THROW(ddim.set_timesteps(0), std::invalid_argument);

  euler_discrete_sampler euler(euler_discrete_options{});
  euler.set_timesteps(2);
  EXPECT_THROW(euler.scale_model_input(x, torch::tensor(500.0f)), std::invalid_argument);
  for (int i = 0; i < 2; ++i) euler.step(x, euler.timesteps()[i], x);
  EXPECT_THROW(euler.step(x, euler.timesteps()[1], x), std::logic_error);

  dpm_solver_multistep_sampler dpm(dpm_solver_multistep_options{});
  EXPECT_THROW(dpm.step(x, torch::tensor(1), x), std::logic_error);
  dpm.set_timesteps(3);
  for (int i = 0; i < 3; ++i) dpm.step(x, dpm.timesteps()[i], x);
  EXPECT_THROW(dpm.step(x, dpm.timesteps()[2], x), std::logic_error);
}

TEST(latent_samplers, few_steps_end_with_a_first_order_step) {
  dpm_solver_multistep_sampler dpm(dpm_solver_multistep_options{});
  dpm.set_timesteps(5);
  const auto x = torch::ones({1, 1, 2, 2});
  std::vector<int> orders;
  for (int64_t i = 0; i < 5; ++i) {
    dpm.step(x * 0.1, dpm.timesteps()[i], x);
    orders.push_back(dpm.last_solver_order());
  }
  EXPECT_EQ(orders, (std::vector<int>{1, 2, 2, 2, 1}));
}

TEST(latent_samplers, unknown_classes_and_unsupported_options_are_named) {
  auto error_of = [](const std::string& json) -> std::string {
    try {
      make_latent_sampler(scheduler_config::parse(json, "cfg"));
    } catch (const scheduler_config_error& e) {
      return e.what();
    }
    return "";
  };
  EXPECT_EQ(error_of(R"({"_class_name": "LMSDiscreteScheduler"})")
                .find("cfg: _class_name = \"LMSDiscreteScheduler\": no sampler for this class"),
            0u);
  EXPECT_EQ(error_of(R"({"_class_name": "DPMSolverMultistepScheduler",
                        "algorithm_type": "sde-dpmsolver++"})"),
            "cfg: algorithm_type = \"sde-dpmsolver++\": only \"dpmsolver++\" is supported");
  EXPECT_EQ(error_of(R"({"_class_name": "DPMSolverMultistepScheduler", "solver_order": 3})"),
            "cfg: solver_order = 3: supported: 1, 2");
  EXPECT_EQ(error_of(R"({"_class_name": "DPMSolverMultistepScheduler",
                        "lambda_min_clipped": -5.1})"),
            "cfg: lambda_min_clipped = -5.1: only -Infinity (no clipping) is supported");
  EXPECT_EQ(error_of(R"({"_class_name": "EulerDiscreteScheduler", "use_karras_sigmas": true})"),
            "cfg: use_karras_sigmas = true: Karras sigmas are not supported");
  EXPECT_EQ(error_of(R"({"_class_name": "DDIMScheduler", "thresholding": true})"),
            "cfg: thresholding = true: dynamic thresholding is not supported");
  EXPECT_EQ(error_of(R"({"_class_name": "DDIMScheduler", "prediction_type": "sample"})"),
            "cfg: prediction_type = \"sample\": supported: epsilon, v_prediction");
}

} // namespace
} // namespace ddactor
