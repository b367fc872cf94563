// LoRA files in diffusers' key form; see lora_file.hpp.
#include "models/sd/lora_file.hpp"

#include <cstring>
#include <set>
#include <sstream>
#include <stdexcept>

#include "runtime/safetensors.hpp"

namespace ddactor {

namespace {

constexpr const char* rank_metadata = "ddactor_lora_rank";
constexpr const char* alpha_metadata = "ddactor_lora_alpha";

stored_tensor as_stored(const std::string& name, const torch::Tensor& tensor) {
  const auto host = tensor.detach().to(torch::kCPU, torch::kFloat32).contiguous();
  stored_tensor out{name, tensor_dtype::f32, host.sizes().vec(), {}};
  out.data.resize(static_cast<size_t>(host.nbytes()));
  std::memcpy(out.data.data(), host.data_ptr(), out.data.size());
  return out;
}

std::string shape_text(const std::vector<int64_t>& shape) {
  std::ostringstream out;
  out << "[";
  for (size_t i = 0; i < shape.size(); ++i)
    out << (i ? ", " : "") << shape[i];
  return out.str() + "]";
}

// The scale the file's "up" tensors carry: alpha / rank where ddactor wrote them, else 1.
double file_scale(const std::filesystem::path& file, const safetensors_content& content) {
  const auto rank = content.metadata.find(rank_metadata);
  const auto alpha = content.metadata.find(alpha_metadata);
  if (rank == content.metadata.end() || alpha == content.metadata.end())
    return 1.0;
  try {
    const double r = std::stod(rank->second), a = std::stod(alpha->second);
    if (r > 0 && a > 0)
      return a / r;
  } catch (const std::exception&) {
  }
  throw std::runtime_error(file.string() + ": metadata " + rank_metadata + "/" + alpha_metadata +
                           " are not positive numbers");
}

} // namespace

std::string lora_file_key(const std::string& layer_path, bool up) {
  return "unet." + layer_path + (up ? ".lora.up.weight" : ".lora.down.weight");
}

void write_lora_file(const std::filesystem::path& file, low_rank_adapters_impl& adapters) {
  torch::NoGradGuard no_grad;
  safetensors_content content;
  content.metadata["format"] = "pt";
  content.metadata[rank_metadata] = std::to_string(adapters.rank());
  std::ostringstream alpha;
  alpha.precision(17);
  alpha << adapters.alpha();
  content.metadata[alpha_metadata] = alpha.str();
  for (size_t i = 0; i < adapters.sites().size(); ++i) {
    const auto& path = adapters.sites()[i].path;
    const auto& adapter = adapters.adapters()[i];
    content.tensors.push_back(as_stored(lora_file_key(path, false), adapter->down->weight));
    content.tensors.push_back(
      as_stored(lora_file_key(path, true), adapter->up->weight * adapter->scale()));
  }
  write_safetensors_file(file, content);
}

void load_lora_file(const std::filesystem::path& file, low_rank_adapters_impl& adapters) {
  const auto content = read_safetensors_file(file);
  const double scale = file_scale(file, content);
  std::vector<std::string> problems;
  std::set<std::string> expected;
  struct pending {
    torch::Tensor target;
    torch::Tensor value;
  };
  std::vector<pending> copies;
  for (size_t i = 0; i < adapters.sites().size(); ++i) {
    const auto& adapter = adapters.adapters()[i];
    for (const bool up : {false, true}) {
      const auto key = lora_file_key(adapters.sites()[i].path, up);
      expected.insert(key);
      const auto& target = up ? adapter->up->weight : adapter->down->weight;
      const auto* stored = content.find(key);
      if (stored == nullptr) {
        problems.push_back("missing " + key);
        continue;
      }
      if (stored->shape != target.sizes().vec()) {
        problems.push_back(key + " has shape " + shape_text(stored->shape) + ", the model needs " +
                           shape_text(target.sizes().vec()));
        continue;
      }
      if (stored->dtype != tensor_dtype::f32 && stored->dtype != tensor_dtype::f16 &&
          stored->dtype != tensor_dtype::bf16) {
        problems.push_back(key + " is " + std::string(dtype_name(stored->dtype)) +
                           ", not a float tensor");
        continue;
      }
      const auto type = stored->dtype == tensor_dtype::f32   ? torch::kFloat32
                        : stored->dtype == tensor_dtype::f16 ? torch::kFloat16
                                                             : torch::kBFloat16;
      auto value = torch::empty(stored->shape, torch::TensorOptions(type));
      std::memcpy(value.data_ptr(), stored->data.data(), stored->data.size());
      value = value.to(torch::kFloat32);
      // "up" holds B times the file's scale; the adapter applies its own scale.
      if (up)
        value = value * (scale / adapter->scale());
      copies.push_back({target, value});
    }
  }
  for (const auto& stored : content.tensors)
    if (expected.count(stored.name) == 0)
      problems.push_back("unexpected " + stored.name);
  if (!problems.empty()) {
    std::string message = file.string() + ": the LoRA file does not fit the model's adapters (";
    for (size_t i = 0; i < problems.size() && i < 4; ++i)
      message += (i ? "; " : "") + problems[i];
    if (problems.size() > 4)
      message += "; and " + std::to_string(problems.size() - 4) + " more";
    throw std::runtime_error(message + ")");
  }
  torch::NoGradGuard no_grad;
  for (auto& copy : copies)
    copy.target.copy_(copy.value);
}

low_rank_adapters read_lora_adapters(const std::filesystem::path& file, torch::nn::Module& unet) {
  const safetensors_reader header(file);
  constexpr std::string_view prefix = "unet.", down = ".lora.down.weight", up = ".lora.up.weight";
  std::vector<std::string> paths;
  int64_t rank = 0;
  for (const auto& entry : header.entries()) {
    const std::string_view name = entry.name;
    const bool is_down = name.ends_with(down);
    if (!name.starts_with(prefix) || (!is_down && !name.ends_with(up)))
      throw std::runtime_error(file.string() + ": " + entry.name +
                               " is not a LoRA key of the form unet.<layer>.lora.down.weight or "
                               "unet.<layer>.lora.up.weight");
    if (!is_down)
      continue;
    if (entry.shape.size() != 2 || entry.shape[0] < 1 || (rank != 0 && entry.shape[0] != rank))
      throw std::runtime_error(file.string() + ": " + entry.name + " has shape " +
                               shape_text(entry.shape) + "; the adapters' rank is " +
                               (rank == 0 ? std::string("unknown") : std::to_string(rank)));
    rank = entry.shape[0];
    paths.emplace_back(name.substr(prefix.size(), name.size() - prefix.size() - down.size()));
  }
  if (paths.empty())
    throw std::runtime_error(file.string() + " holds no LoRA adapters (no unet.*.lora.down.weight)");
  std::vector<adapter_site> sites;
  try {
    sites = find_adapter_sites(unet, paths);
  } catch (const std::invalid_argument& e) {
    throw std::runtime_error(file.string() + ": " + e.what());
  }
  double alpha = static_cast<double>(rank);
  const auto& metadata = header.metadata();
  if (metadata.count(rank_metadata) != 0 && metadata.count(alpha_metadata) != 0) {
    safetensors_content scale_only;
    scale_only.metadata = metadata;
    alpha = file_scale(file, scale_only) * static_cast<double>(rank);
  }
  low_rank_adapters adapters(std::move(sites), rank, alpha);
  load_lora_file(file, *adapters);
  return adapters;
}

} // namespace ddactor
