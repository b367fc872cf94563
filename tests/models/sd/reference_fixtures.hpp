#pragma once
// Access to the SD 1.x reference fixtures (outputs of the real diffusers code, see the folder's
// README.md) for the SD model tests: where they are, their tensors as LibTorch tensors, and the
// error measure the tests report.

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <cstring>
#include <fstream>
#include <filesystem>
#include <map>
#include <string>

#include <unistd.h>

#include "models/sd/module_state_loading.hpp"
#include "runtime/safetensors.hpp"
#include "tests/models/sd/sd1_fixture_io.hpp"

namespace ddactor::sd_test {

inline std::filesystem::path fixtures_dir() { return sd1_fixtures::folder(); }

/// Why the tests that need `sub` (a file or folder of the fixtures) cannot run; empty when they
/// can.
inline std::string missing_fixture(const std::string& sub) {
  const auto path = fixtures_dir() / sub;
  if (std::filesystem::exists(path))
    return {};
  return "SD 1.x reference fixtures not found at " + path.string() +
         " (set DDACTOR_SD1_FIXTURES when configuring)";
}

#define DDACTOR_SKIP_WITHOUT_FIXTURE(sub)                                                       \
  do {                                                                                          \
    if (const auto reason = ::ddactor::sd_test::missing_fixture(sub); !reason.empty())          \
      GTEST_SKIP() << reason;                                                                   \
  } while (false)

// The tensors of a fixture file and the error measure: one reader for every SD test.
using sd1_fixtures::read_tensors;
using sd1_fixtures::relative_error;
using sd1_fixtures::to_torch;

/// The tolerance the port is held to against diffusers' float32 outputs.
inline constexpr double reference_tolerance = 1e-4;

inline nlohmann::ordered_json read_json(const std::filesystem::path& file) {
  std::ifstream in(file);
  return nlohmann::ordered_json::parse(in);
}

/// Checks that the module's state_dict has exactly the manifest's keys, shapes and order
/// (`manifests/<name>_state_dict_shapes.json`); returns the module's element count.
inline int64_t expect_state_matches_manifest(torch::nn::Module& module,
                                             const std::filesystem::path& manifest) {
  const auto expected = read_json(manifest);
  const auto state = module_state(module);
  EXPECT_EQ(state.size(), expected.size()) << "tensor count differs from " << manifest;
  size_t reported = 0;
  auto it = expected.begin();
  int64_t elements = 0;
  for (size_t i = 0; i < state.size(); ++i, ++it) {
    const auto& [name, tensor] = state[i];
    elements += tensor.numel();
    if (it == expected.end())
      break;
    const auto shape = it.value().get<std::vector<int64_t>>();
    if ((name != it.key() || tensor.sizes().vec() != shape) && reported++ < 10)
      ADD_FAILURE() << "entry " << i << ": model " << name << " " << tensor.sizes()
                    << ", manifest " << it.key() << " " << it.value().dump();
  }
  return elements;
}

/// A fresh, empty temporary folder for one test.
inline std::filesystem::path scratch_dir(const std::string& name) {
  auto dir = std::filesystem::temp_directory_path() /
             ("ddactor_" + name + "_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

} // namespace ddactor::sd_test
