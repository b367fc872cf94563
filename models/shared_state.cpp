// Encoding and restoring the state a swarm shares; see shared_state.hpp.
#include "models/shared_state.hpp"

#include <cstring>
#include <stdexcept>

#include "models/checkpoint.hpp"
#include "runtime/compression/zstd_stage.hpp"
#include "runtime/safetensors.hpp"

namespace ddactor {

namespace {

// "DDSZ" + original size (u64, little-endian) + zstd frame(s).
constexpr char zstd_magic[4] = {'D', 'D', 'S', 'Z'};
constexpr size_t zstd_header = 12;
// A state larger than this is refused (a hostile size field must not allocate terabytes).
constexpr uint64_t max_state_bytes = uint64_t{16} << 30;

struct named_tensor {
  std::string name;
  torch::Tensor tensor;
  /// Travels as float32 even when the state's floats are halved (counts must stay exact).
  bool exact = false;
};

std::vector<named_tensor> shared_tensors(model_trainer& trainer, const outer_nesterov* outer) {
  std::vector<named_tensor> out;
  for (const auto& item : trainer.module().named_parameters())
    out.push_back({"model." + item.key(), item.value()});
  if (trainer.has_ema())
    for (const auto& item : trainer.ema_module().named_parameters())
      out.push_back({"ema." + item.key(), item.value()});
  out.push_back({"optimizer.exp_avg", trainer.optimizer().exp_avg()});
  out.push_back({"optimizer.exp_avg_sq", trainer.optimizer().exp_avg_sq()});
  if (trainer.optimizer().options().sparse_catch_up)
    out.push_back({"optimizer.pending_rounds", trainer.optimizer().pending_rounds(), true});
  if (outer != nullptr) {
    out.push_back({"outer.anchor", outer->anchor()});
    out.push_back({"outer.momentum", outer->momentum()});
  }
  return out;
}

int64_t metadata_number(const safetensors_content& content, const std::string& key) {
  auto it = content.metadata.find(key);
  if (it == content.metadata.end())
    throw std::runtime_error("shared state has no '" + key + "'");
  size_t used = 0;
  auto value = std::stoll(it->second, &used);
  if (used != it->second.size() || value < 0)
    throw std::runtime_error("shared state '" + key + "' is not a count");
  return value;
}

} // namespace

std::vector<char> encode_shared_state(model_trainer& trainer, int64_t epoch,
                                      const outer_nesterov* outer,
                                      const std::string& compression) {
  safetensors_content content;
  auto half = compression == "fp16" ? torch::kFloat16
              : compression == "bf16" ? torch::kBFloat16
                                      : torch::kFloat32;
  for (const auto& [name, tensor, exact] : shared_tensors(trainer, outer))
    content.tensors.push_back(
      to_stored_tensor(name, tensor.detach().to(exact ? torch::kFloat32 : half)));
  content.metadata["format"] = "ddactor-shared-state-1";
  content.metadata["epoch"] = std::to_string(epoch);
  content.metadata["step"] = std::to_string(trainer.step());
  content.metadata["optimizer_steps"] = std::to_string(trainer.optimizer().step_count());
  auto encoded = encode_safetensors(content);
  std::vector<char> out;
  if (compression == "zstd") {
    auto packed = zstd_compress(encoded, 3);
    out.resize(zstd_header + packed.size());
    std::memcpy(out.data(), zstd_magic, 4);
    uint64_t size = encoded.size();
    std::memcpy(out.data() + 4, &size, 8);
    std::memcpy(out.data() + zstd_header, packed.data(), packed.size());
  } else {
    out.resize(encoded.size());
    std::memcpy(out.data(), encoded.data(), encoded.size());
  }
  return out;
}

std::size_t shared_state_copy::bytes() const {
  std::size_t total = 0;
  for (const auto& t : tensors)
    total += static_cast<std::size_t>(t.numel()) * t.element_size();
  return total;
}

shared_state_copy copy_shared_state(model_trainer& trainer, const outer_nesterov* outer) {
  shared_state_copy copy;
  for (const auto& [name, tensor, exact] : shared_tensors(trainer, outer))
    copy.tensors.push_back(
      tensor.detach().to(torch::kCPU, tensor.scalar_type(), /*non_blocking=*/false,
                         /*copy=*/true));
  copy.step = trainer.step();
  copy.optimizer_steps = trainer.optimizer().step_count();
  return copy;
}

void restore_shared_state(const shared_state_copy& copy, model_trainer& trainer,
                          outer_nesterov* outer) {
  auto targets = shared_tensors(trainer, outer);
  if (targets.size() != copy.tensors.size())
    throw std::runtime_error("the copy of the shared state is of another model");
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < targets.size(); ++i) {
    if (targets[i].tensor.sizes() != copy.tensors[i].sizes())
      throw std::runtime_error("the copy of tensor '" + targets[i].name + "' does not fit");
  }
  for (size_t i = 0; i < targets.size(); ++i)
    targets[i].tensor.copy_(copy.tensors[i]);
  trainer.optimizer().set_step_count(copy.optimizer_steps);
  trainer.set_step(copy.step);
}

int64_t restore_shared_state(const std::vector<char>& bytes, model_trainer& trainer,
                             outer_nesterov* outer) {
  std::vector<std::byte> plain;
  std::span<const std::byte> file(reinterpret_cast<const std::byte*>(bytes.data()), bytes.size());
  if (bytes.size() >= zstd_header && std::memcmp(bytes.data(), zstd_magic, 4) == 0) {
    uint64_t size = 0;
    std::memcpy(&size, bytes.data() + 4, 8);
    if (size > max_state_bytes)
      throw std::runtime_error("shared state claims an absurd size");
    plain.resize(static_cast<size_t>(size));
    auto written = zstd_decompress(file.subspan(zstd_header), plain);
    if (written != plain.size())
      throw std::runtime_error("shared state is shorter than its header says");
    file = plain;
  }
  auto content = decode_safetensors(file);
  if (content.metadata["format"] != "ddactor-shared-state-1")
    throw std::runtime_error("not a ddactor shared state");
  auto epoch = metadata_number(content, "epoch");
  auto step = metadata_number(content, "step");
  auto optimizer_steps = metadata_number(content, "optimizer_steps");
  // Check everything first: names, shapes, dtypes, finite values.
  auto targets = shared_tensors(trainer, outer);
  std::vector<torch::Tensor> values;
  for (const auto& [name, target, exact] : targets) {
    const auto* stored = content.find(name);
    if (stored == nullptr)
      throw std::runtime_error("shared state has no tensor '" + name + "'");
    if (stored->dtype != tensor_dtype::f32 && stored->dtype != tensor_dtype::f16 &&
        stored->dtype != tensor_dtype::bf16)
      throw std::runtime_error("tensor '" + name + "' is not a float tensor");
    auto value = from_stored_tensor(*stored).to(torch::kFloat32);
    if (value.sizes() != target.sizes())
      throw std::runtime_error("tensor '" + name + "' does not fit the model");
    if (!torch::isfinite(value).all().item<bool>())
      throw std::runtime_error("tensor '" + name + "' holds non-finite values");
    if (exact && (value < 0).any().item<bool>())
      throw std::runtime_error("tensor '" + name + "' holds negative counts");
    values.push_back(value);
  }
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < targets.size(); ++i)
    targets[i].tensor.copy_(values[i]);
  trainer.optimizer().set_step_count(optimizer_steps);
  trainer.set_step(step);
  return epoch;
}

} // namespace ddactor
