// Tests of reading scheduler_config.json: Python's bare -Infinity / Infinity / NaN (which
// diffusers writes and strict JSON parsers refuse), typed access with fallbacks, a file or its
// folder, and errors that name the source and the key.
#include "models/sd/scheduler_config.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <fstream>

namespace ddactor {
namespace {

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

TEST(scheduler_config, reads_python_non_finite_numbers_outside_strings_only) {
  const auto config = scheduler_config::parse(
      R"({"_class_name": "DPMSolverMultistepScheduler", "lambda_min_clipped": -Infinity,
          "upper": Infinity, "undefined": NaN, "list": [NaN, 1],
          "note": "-Infinity \"NaN\" stays text"})",
      "cfg");
  EXPECT_EQ(config.class_name(), "DPMSolverMultistepScheduler");
  EXPECT_EQ(config.number("lambda_min_clipped", 0), -INFINITY);
  EXPECT_EQ(config.number("upper", 0), INFINITY);
  EXPECT_TRUE(std::isnan(config.number("undefined", 0)));
  EXPECT_EQ(config.values()["list"][1], 1);
  EXPECT_EQ(config.text("note", ""), "-Infinity \"NaN\" stays text");
}

TEST(scheduler_config, typed_access_falls_back_for_absent_and_null_keys) {
  const auto config = scheduler_config::parse(
      R"({"steps_offset": 1, "clip_sample": false, "beta_end": 0.012, "trained_betas": null,
          "timestep_spacing": "leading"})",
      "cfg");
  EXPECT_EQ(config.class_name(), "");
  EXPECT_EQ(config.integer("steps_offset", 0), 1);
  EXPECT_EQ(config.integer("num_train_timesteps", 1000), 1000);
  EXPECT_FALSE(config.flag("clip_sample", true));
  EXPECT_EQ(config.number("beta_end", 0.02), 0.012);
  EXPECT_EQ(config.number("steps_offset", 0), 1.0);  // an integer is a number too
  EXPECT_EQ(config.text("timestep_spacing", "linspace"), "leading");
  EXPECT_TRUE(config.is_unset("trained_betas"));
  EXPECT_TRUE(config.is_unset("variance_type"));
  EXPECT_FALSE(config.is_unset("steps_offset"));
  EXPECT_EQ(error_of([&] { config.flag("steps_offset", false); }),
            "cfg: steps_offset = 1: expected true or false");
  EXPECT_EQ(error_of([&] { config.integer("beta_end", 0); }),
            "cfg: beta_end = 0.012: expected an integer");
  EXPECT_EQ(error_of([&] { config.text("clip_sample", ""); }),
            "cfg: clip_sample = false: expected a string");
  EXPECT_EQ(error_of([&] { config.number("timestep_spacing", 0); }),
            "cfg: timestep_spacing = \"leading\": expected a number");
}

TEST(scheduler_config, loads_a_file_or_the_folder_holding_it) {
  const auto folder = std::filesystem::temp_directory_path() /
                      ("ddactor_scheduler_config_" + std::to_string(::getpid()));
  std::filesystem::create_directories(folder);
  const auto file = folder / "scheduler_config.json";
  std::ofstream(file) << R"({"_class_name": "DDIMScheduler", "lambda_min_clipped": -Infinity})";
  EXPECT_EQ(scheduler_config::load(folder).class_name(), "DDIMScheduler");
  EXPECT_EQ(scheduler_config::load(file).source(), file.string());
  std::ofstream(file) << "{\"a\": ";
  EXPECT_EQ(
      error_of([&] { scheduler_config::load(folder); }).find(file.string() + ": not valid JSON"),
      0u);
  std::filesystem::remove_all(folder);
  EXPECT_EQ(error_of([&] { scheduler_config::load(folder); }),
            folder.string() + ": cannot be read (missing or not a file)");
  EXPECT_EQ(error_of([] { scheduler_config::parse("[1]", "cfg"); }), "cfg: not a JSON object");
}

} // namespace
} // namespace ddactor
