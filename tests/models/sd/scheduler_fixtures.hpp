#pragma once
// Shared by the scheduler tests: where the diffusers reference fixtures are
// (DDACTOR_SD1_FIXTURES/schedulers, see its README), reading their safetensors files, and the
// error measure they are held to, max|a - b| / max|b| (relative to the largest reference value,
// because the epsilon loops grow samples to |x| ~ 30 while single elements pass through 0).

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <filesystem>
#include <iostream>
#include <limits>
#include <map>
#include <string>

#include "models/checkpoint.hpp"
#include "runtime/safetensors.hpp"

namespace ddactor::scheduler_fixtures {

inline const std::filesystem::path root =
    std::filesystem::path(DDACTOR_SD1_FIXTURES) / "schedulers";

// Every float comparison against the fixtures must be this close.
inline constexpr double tolerance = 1e-5;

inline bool present() { return std::filesystem::exists(root / "index.json"); }

#define SKIP_WITHOUT_SCHEDULER_FIXTURES()                                                   \
  if (!::ddactor::scheduler_fixtures::present())                                            \
  GTEST_SKIP() << "SD fixtures not found at " << ::ddactor::scheduler_fixtures::root

// The tensors of one fixture file by name.
inline std::map<std::string, torch::Tensor> read_tensors(const std::filesystem::path& file) {
  std::map<std::string, torch::Tensor> out;
  for (const auto& stored : read_safetensors_file(file).tensors)
    out.emplace(stored.name, from_stored_tensor(stored));
  return out;
}

// max|actual - expected| / max|expected|, in float64; infinity when the shapes differ.
inline double relative_error(const torch::Tensor& actual, const torch::Tensor& expected) {
  if (actual.sizes() != expected.sizes()) return std::numeric_limits<double>::infinity();
  const auto a = actual.to(torch::kFloat64);
  const auto b = expected.to(torch::kFloat64);
  const double scale = b.abs().max().item<double>();
  const double difference = (a - b).abs().max().item<double>();
  return scale > 0 ? difference / scale : difference;
}

// The largest relative error of a group of comparisons, printed when the group is done.
class error_record {
public:
  explicit error_record(std::string group) : group_(std::move(group)) {}
  ~error_record() {
    std::cout << "[ rel. error ] " << group_ << ": max " << worst_ << " over " << count_
              << " comparisons\n";
  }
  void check(const torch::Tensor& actual, const torch::Tensor& expected, const std::string& what) {
    const double error = relative_error(actual, expected);
    EXPECT_LE(error, tolerance) << group_ << " " << what;
    worst_ = std::max(worst_, error);
    ++count_;
  }
  double worst() const { return worst_; }

private:
  std::string group_;
  double worst_ = 0;
  int count_ = 0;
};

} // namespace ddactor::scheduler_fixtures
