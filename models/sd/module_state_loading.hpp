#pragma once
// Filling a LibTorch module's parameters and buffers from a safetensors file whose keys are the
// module's state_dict names (the layout diffusers and transformers write), one tensor at a time:
// a 3.4 GB UNet never sits in memory twice. Every tensor of the file must be consumed and every
// parameter filled: missing, unexpected and mis-shaped keys are collected and refused together,
// in one error that names the file and the keys. Half-precision (F16, BF16) and F64 files load
// into the module's own dtype; files whose keys follow an older naming load through a renaming
// of the file's keys.

#include <torch/torch.h>

#include <filesystem>
#include <functional>
#include <string>
#include <vector>

namespace ddactor {

struct module_state_options {
  /// File keys that are consumed without a parameter (such as CLIP's `position_ids` buffer,
  /// which older checkpoints carry and newer code computes).
  std::vector<std::string> ignored_keys;
  /// The module's name for a file key, for files written in an older layout (such as the VAE
  /// attention's `query.weight` for today's `to_q.weight`). Empty: file keys are module names.
  std::function<std::string(const std::string& file_key)> module_name_for_file_key = {};
};

/// What a file and a module disagree on; empty() when they fit.
struct module_state_mismatch {
  std::vector<std::string> missing;     // in the module, not in the file
  std::vector<std::string> unexpected;  // in the file, not in the module
  std::vector<std::string> misshaped;   // "name: file [a, b] vs module [c, d]"
  bool empty() const { return missing.empty() && unexpected.empty() && misshaped.empty(); }
  /// One message listing them (the first few of each kind, and how many more).
  std::string describe() const;
};

/// Compares the file's keys and shapes with the module's state (nothing is read).
module_state_mismatch compare_module_state(torch::nn::Module& module,
                                           const std::filesystem::path& file,
                                           const module_state_options& options = {});

/// Loads the file into the module. Throws std::runtime_error naming the file and every
/// mismatch (nothing is changed then), or safetensors_error for a damaged file.
void load_module_state(torch::nn::Module& module, const std::filesystem::path& file,
                       const module_state_options& options = {});

/// The module's parameters and buffers by state_dict name (persistent buffers included).
std::vector<std::pair<std::string, torch::Tensor>> module_state(torch::nn::Module& module);

} // namespace ddactor
