// Loading a module's state from a safetensors file, tensor by tensor; see module_state_loading.hpp.
#include "models/sd/module_state_loading.hpp"

#include <algorithm>
#include <map>
#include <set>
#include <sstream>

#include "runtime/safetensors.hpp"

namespace ddactor {

namespace {

// How many keys of each kind an error lists before "and N more".
constexpr size_t listed_keys = 12;

std::string shape_text(const std::vector<int64_t>& shape) {
  std::ostringstream out;
  out << '[';
  for (size_t i = 0; i < shape.size(); ++i)
    out << (i ? ", " : "") << shape[i];
  out << ']';
  return out.str();
}

void list(std::ostringstream& out, const char* what, const std::vector<std::string>& keys) {
  if (keys.empty())
    return;
  out << "\n  " << keys.size() << ' ' << what << ':';
  for (size_t i = 0; i < std::min(keys.size(), listed_keys); ++i)
    out << "\n    " << keys[i];
  if (keys.size() > listed_keys)
    out << "\n    ... and " << keys.size() - listed_keys << " more";
}

std::optional<torch::ScalarType> torch_type(tensor_dtype dtype) {
  switch (dtype) {
    case tensor_dtype::f32: return torch::kFloat32;
    case tensor_dtype::f16: return torch::kFloat16;
    case tensor_dtype::bf16: return torch::kBFloat16;
    case tensor_dtype::f64: return torch::kFloat64;
    default: return std::nullopt;
  }
}

// The file's tensors under the module names they fill; ignored keys are left out. A second file
// key that renames to a name already taken is unexpected.
std::map<std::string, const safetensors_entry*> entries_by_module_name(
  const safetensors_reader& reader, const module_state_options& options,
  std::vector<std::string>& unexpected) {
  std::set<std::string> ignored(options.ignored_keys.begin(), options.ignored_keys.end());
  std::map<std::string, const safetensors_entry*> out;
  for (const auto& entry : reader.entries()) {
    if (ignored.count(entry.name) != 0)
      continue;
    auto name = options.module_name_for_file_key ? options.module_name_for_file_key(entry.name)
                                                 : entry.name;
    if (!out.emplace(name, &entry).second)
      unexpected.push_back(entry.name + " (a second tensor for " + name + ")");
  }
  return out;
}

std::string named_as(const std::string& module_name, const safetensors_entry& entry) {
  return entry.name == module_name ? module_name
                                   : module_name + " (file key " + entry.name + ")";
}

// How the file's tensors fill the module: the file entry for each module name, and what does not
// fit.
struct file_fit {
  std::map<std::string, const safetensors_entry*> entries;
  module_state_mismatch mismatch;
};

file_fit fit(const std::vector<std::pair<std::string, torch::Tensor>>& state,
             const safetensors_reader& reader, const module_state_options& options) {
  file_fit out;
  out.entries = entries_by_module_name(reader, options, out.mismatch.unexpected);
  std::set<std::string> in_module;
  for (const auto& [name, tensor] : state) {
    in_module.insert(name);
    auto it = out.entries.find(name);
    if (it == out.entries.end()) {
      out.mismatch.missing.push_back(name);
      continue;
    }
    const auto& entry = *it->second;
    const auto sizes = tensor.sizes().vec();
    if (entry.shape != sizes)
      out.mismatch.misshaped.push_back(named_as(name, entry) + ": file " +
                                       shape_text(entry.shape) + " vs model " + shape_text(sizes));
    else if (!torch_type(entry.dtype))
      out.mismatch.misshaped.push_back(named_as(name, entry) + ": dtype " +
                                       std::string(dtype_name(entry.dtype)) +
                                       " is not a floating-point type");
  }
  for (const auto& [name, entry] : out.entries)
    if (in_module.count(name) == 0)
      out.mismatch.unexpected.push_back(entry->name);
  return out;
}

} // namespace

std::string module_state_mismatch::describe() const {
  std::ostringstream out;
  list(out, "keys the model has and the file lacks", missing);
  list(out, "keys in the file the model does not have", unexpected);
  list(out, "keys whose shape or dtype does not fit", misshaped);
  return out.str();
}

std::vector<std::pair<std::string, torch::Tensor>> module_state(torch::nn::Module& module) {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (const auto& item : module.named_parameters(/*recurse=*/true))
    out.emplace_back(item.key(), item.value());
  for (const auto& item : module.named_buffers(/*recurse=*/true))
    out.emplace_back(item.key(), item.value());
  return out;
}

module_state_mismatch compare_module_state(torch::nn::Module& module,
                                           const std::filesystem::path& file,
                                           const module_state_options& options) {
  const safetensors_reader reader(file);
  return fit(module_state(module), reader, options).mismatch;
}

void load_module_state(torch::nn::Module& module, const std::filesystem::path& file,
                       const module_state_options& options) {
  const safetensors_reader reader(file);
  const auto state = module_state(module);
  const auto [entries, mismatch] = fit(state, reader, options);
  if (!mismatch.empty())
    throw std::runtime_error(file.string() + " does not fit the model:" + mismatch.describe());
  torch::NoGradGuard no_grad;
  std::vector<std::byte> staging;  // one tensor at a time, for dtypes that need converting
  for (const auto& [name, target] : state) {
    const auto& entry = *entries.at(name);
    const auto type = *torch_type(entry.dtype);
    if (type == target.scalar_type() && target.is_contiguous() && target.device().is_cpu()) {
      reader.read(entry, {static_cast<std::byte*>(target.data_ptr()),
                          static_cast<size_t>(target.nbytes())});
      continue;
    }
    staging.resize(entry.size);
    reader.read(entry, staging);
    auto stored = torch::from_blob(staging.data(), target.sizes(), torch::TensorOptions(type));
    target.copy_(stored);
  }
}

} // namespace ddactor
