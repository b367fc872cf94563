#pragma once
// Access to the SD 1.x reference fixtures (DDACTOR_SD1_FIXTURES, written by the upstream Python
// code) for the tests of models/sd: where they are, their tensors as LibTorch tensors, and the
// relative error the ports are held to.

#include <torch/torch.h>

#include <cstring>
#include <filesystem>
#include <map>
#include <string>

#include "runtime/safetensors.hpp"

namespace ddactor::sd1_fixtures {

inline std::filesystem::path folder() { return DDACTOR_SD1_FIXTURES; }

/// Why the fixture file is unusable, or empty when it is there.
inline std::string missing(const std::filesystem::path& file) {
  std::error_code error;
  if (std::filesystem::is_regular_file(file, error))
    return {};
  return "SD 1.x fixture " + file.string() + " is absent (DDACTOR_SD1_FIXTURES=" +
         folder().string() + ")";
}

inline torch::Tensor to_torch(const stored_tensor& stored) {
  torch::ScalarType type;
  switch (stored.dtype) {
    case tensor_dtype::f32: type = torch::kFloat32; break;
    case tensor_dtype::f16: type = torch::kFloat16; break;
    case tensor_dtype::i64: type = torch::kInt64; break;
    default: throw std::runtime_error(stored.name + ": unexpected dtype in a fixture");
  }
  auto out = torch::empty(stored.shape, torch::TensorOptions(type));
  std::memcpy(out.data_ptr(), stored.data.data(), stored.data.size());
  return out;
}

/// Every tensor of a safetensors file by name.
inline std::map<std::string, torch::Tensor> read_tensors(const std::filesystem::path& file) {
  std::map<std::string, torch::Tensor> out;
  for (const auto& stored : read_safetensors_file(file).tensors)
    out.emplace(stored.name, to_torch(stored));
  return out;
}

/// max|actual - expected| / max|expected|, the measure the ports are held to.
inline double relative_error(const torch::Tensor& actual, const torch::Tensor& expected) {
  const auto a = actual.to(torch::kFloat64);
  const auto b = expected.to(torch::kFloat64);
  return (a - b).abs().max().item<double>() / b.abs().max().item<double>();
}

} // namespace ddactor::sd1_fixtures
