#pragma once
// Comparing two runs' checkpoints to float tolerance: runs that train the same steps with the
// gradients summed in another grouping (several trainers, micro-batches) end within rounding.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <vector>

#include "runtime/checkpoint_files.hpp"
#include "runtime/safetensors.hpp"

namespace ddactor::testing {

inline safetensors_content newest_checkpoint(const std::filesystem::path& run_dir) {
  auto files = list_checkpoints(run_dir);
  if (files.empty())
    throw std::runtime_error("no checkpoint in " + run_dir.string());
  return read_safetensors_file(files.back().path);
}

inline std::vector<float> floats_of(const stored_tensor& tensor) {
  std::vector<float> values(static_cast<size_t>(tensor.numel()));
  std::memcpy(values.data(), tensor.data.data(), values.size() * sizeof(float));
  return values;
}

struct checkpoint_difference {
  int compared = 0;      // float32 tensors compared
  float largest = 0;     // largest |a - b| / (1 + |a|) over all of them
};

/// Compares every tensor of `a` with `b`'s of the same name: float32 ones to `tolerance`
/// (relative to 1 + |a|), the others (the random stream's state) byte for byte. Failures are
/// reported as test failures naming the tensor.
inline checkpoint_difference compare_checkpoints(const safetensors_content& a,
                                                 const safetensors_content& b,
                                                 float tolerance) {
  checkpoint_difference out;
  for (const auto& tensor : a.tensors) {
    const auto* other = b.find(tensor.name);
    if (other == nullptr) {
      ADD_FAILURE() << "missing " << tensor.name;
      continue;
    }
    if (tensor.dtype != tensor_dtype::f32) {
      EXPECT_EQ(tensor.data, other->data) << tensor.name;
      continue;
    }
    const auto x = floats_of(tensor);
    const auto y = floats_of(*other);
    if (x.size() != y.size()) {
      ADD_FAILURE() << tensor.name << ": " << x.size() << " vs " << y.size() << " values";
      continue;
    }
    float largest = 0;
    for (size_t i = 0; i < x.size(); ++i)
      largest = std::max(largest, std::abs(x[i] - y[i]) / (1.0f + std::abs(x[i])));
    EXPECT_LT(largest, tolerance) << tensor.name;
    out.largest = std::max(out.largest, largest);
    ++out.compared;
  }
  return out;
}

} // namespace ddactor::testing
