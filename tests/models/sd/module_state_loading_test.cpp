// Loading a module from a safetensors file by state_dict names: exact values from float32 and
// half-precision files, ignored keys, and one clear error that names the file and every missing,
// unexpected and mis-shaped key (the module unchanged).
#include "models/sd/module_state_loading.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>

#include "runtime/safetensors.hpp"

namespace ddactor {
namespace {

struct two_layers_impl : torch::nn::Module {
  two_layers_impl()
    : first(register_module("first", torch::nn::Linear(3, 2))),
      norm(register_module("norm", torch::nn::BatchNorm1d(2))) {}
  torch::nn::Linear first;
  torch::nn::BatchNorm1d norm;
};
TORCH_MODULE_IMPL(two_layers, two_layers_impl);

stored_tensor as_stored(const std::string& name, const torch::Tensor& t, tensor_dtype dtype) {
  const auto type = dtype == tensor_dtype::f16 ? torch::kFloat16 : torch::kFloat32;
  auto converted = t.to(type).contiguous();
  stored_tensor out{name, dtype, converted.sizes().vec(), {}};
  out.data.resize(static_cast<size_t>(converted.nbytes()));
  std::memcpy(out.data.data(), converted.data_ptr(), out.data.size());
  return out;
}

// A file holding `source`'s state, in `dtype`, plus `extra` tensors.
std::filesystem::path write_state(two_layers& source, tensor_dtype dtype,
                                  std::vector<stored_tensor> extra = {},
                                  const std::string& skip = "") {
  safetensors_content content;
  for (auto& [name, tensor] : module_state(*source))
    if (name != skip)
      content.tensors.push_back(as_stored(name, tensor, dtype));
  for (auto& e : extra)
    content.tensors.push_back(std::move(e));
  auto path = std::filesystem::temp_directory_path() /
              ("ddactor_module_state_" + std::to_string(::getpid()) + ".safetensors");
  write_safetensors_file(path, content);
  return path;
}

TEST(module_state_loading, float32_and_float16_files_fill_every_parameter_and_buffer) {
  two_layers source;
  {
    torch::NoGradGuard no_grad;
    source->norm->running_mean.fill_(0.25);
  }
  for (auto dtype : {tensor_dtype::f32, tensor_dtype::f16}) {
    auto file = write_state(source, dtype);
    two_layers target;
    load_module_state(*target, file);
    const double tolerance = dtype == tensor_dtype::f32 ? 0.0 : 1e-3;
    EXPECT_TRUE(torch::allclose(target->first->weight, source->first->weight, 0, tolerance));
    EXPECT_TRUE(torch::allclose(target->norm->running_mean, source->norm->running_mean));
    std::filesystem::remove(file);
  }
}

TEST(module_state_loading, ignored_keys_are_consumed) {
  two_layers source;
  auto file = write_state(source, tensor_dtype::f32,
                          {as_stored("position_ids", torch::arange(4), tensor_dtype::f32)});
  two_layers target;
  EXPECT_THROW(load_module_state(*target, file), std::runtime_error);
  EXPECT_NO_THROW(load_module_state(*target, file, {{"position_ids"}}));
  std::filesystem::remove(file);
}

TEST(module_state_loading, every_mismatch_is_named_in_one_error_and_nothing_changes) {
  two_layers source;
  auto file = write_state(source, tensor_dtype::f32,
                          {as_stored("surplus.weight", torch::ones({2}), tensor_dtype::f32)},
                          "first.bias");
  two_layers target;
  const auto before = target->first->weight.clone();
  try {
    load_module_state(*target, file);
    FAIL() << "loaded a file with a missing and an unexpected key";
  } catch (const std::runtime_error& e) {
    const std::string text = e.what();
    EXPECT_NE(text.find(file.string()), std::string::npos) << text;
    EXPECT_NE(text.find("first.bias"), std::string::npos) << text;
    EXPECT_NE(text.find("surplus.weight"), std::string::npos) << text;
  }
  EXPECT_TRUE(torch::equal(target->first->weight, before));
  std::filesystem::remove(file);

  auto wrong = write_state(source, tensor_dtype::f32, {}, "first.weight");
  {
    safetensors_content content = read_safetensors_file(wrong);
    content.tensors.push_back(as_stored("first.weight", torch::zeros({3, 2}), tensor_dtype::f32));
    write_safetensors_file(wrong, content);
  }
  const auto mismatch = compare_module_state(*target, wrong);
  ASSERT_EQ(mismatch.misshaped.size(), 1u);
  EXPECT_NE(mismatch.misshaped[0].find("file [3, 2] vs model [2, 3]"), std::string::npos)
    << mismatch.misshaped[0];
  std::filesystem::remove(wrong);
}

TEST(module_state_loading, renamed_file_keys_fill_the_module_and_collisions_are_named) {
  two_layers source;
  safetensors_content content;
  for (auto& [name, tensor] : module_state(*source))
    content.tensors.push_back(
      as_stored(name == "first.weight" ? "old_first.weight" : name, tensor, tensor_dtype::f32));
  auto file = std::filesystem::temp_directory_path() /
              ("ddactor_module_state_renamed_" + std::to_string(::getpid()) + ".safetensors");
  write_safetensors_file(file, content);

  module_state_options options;
  options.module_name_for_file_key = [](const std::string& key) {
    return key == "old_first.weight" ? std::string("first.weight") : key;
  };
  two_layers target;
  EXPECT_THROW(load_module_state(*target, file), std::runtime_error);
  load_module_state(*target, file, options);
  EXPECT_TRUE(torch::equal(target->first->weight, source->first->weight));

  // Both names in one file: the second tensor for first.weight is refused, by its file key.
  content.tensors.push_back(as_stored("first.weight", source->first->weight, tensor_dtype::f32));
  write_safetensors_file(file, content);
  const auto mismatch = compare_module_state(*target, file, options);
  ASSERT_EQ(mismatch.unexpected.size(), 1u);
  EXPECT_NE(mismatch.unexpected[0].find("first.weight"), std::string::npos);
  std::filesystem::remove(file);
}

} // namespace
} // namespace ddactor
