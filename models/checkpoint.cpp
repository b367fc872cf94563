// Checkpoint layout and (de)serialization of the training state; see checkpoint.hpp.
#include "models/checkpoint.hpp"

#include <cstring>

#include "runtime/version.hpp"

namespace ddactor {

namespace {

tensor_dtype dtype_of(const torch::Tensor& t) {
  switch (t.scalar_type()) {
    case torch::kFloat32: return tensor_dtype::f32;
    case torch::kFloat64: return tensor_dtype::f64;
    case torch::kFloat16: return tensor_dtype::f16;
    case torch::kBFloat16: return tensor_dtype::bf16;
    case torch::kInt64: return tensor_dtype::i64;
    case torch::kInt32: return tensor_dtype::i32;
    case torch::kInt16: return tensor_dtype::i16;
    case torch::kInt8: return tensor_dtype::i8;
    case torch::kUInt8: return tensor_dtype::u8;
    case torch::kBool: return tensor_dtype::boolean;
    default: throw checkpoint_error("unsupported tensor type in checkpoint");
  }
}

torch::ScalarType scalar_type_of(tensor_dtype d) {
  switch (d) {
    case tensor_dtype::f32: return torch::kFloat32;
    case tensor_dtype::f64: return torch::kFloat64;
    case tensor_dtype::f16: return torch::kFloat16;
    case tensor_dtype::bf16: return torch::kBFloat16;
    case tensor_dtype::i64: return torch::kInt64;
    case tensor_dtype::i32: return torch::kInt32;
    case tensor_dtype::i16: return torch::kInt16;
    case tensor_dtype::i8: return torch::kInt8;
    case tensor_dtype::u8: return torch::kUInt8;
    case tensor_dtype::boolean: return torch::kBool;
  }
  throw checkpoint_error("unknown dtype");
}

const stored_tensor& require(const safetensors_content& content, const std::string& name) {
  const auto* t = content.find(name);
  if (t == nullptr)
    throw checkpoint_error("checkpoint has no tensor '" + name + "'");
  return *t;
}

// Copies a stored tensor into `target` after checking dtype and shape.
void copy_into(const safetensors_content& content, const std::string& name,
               const torch::Tensor& target) {
  const auto& stored = require(content, name);
  if (scalar_type_of(stored.dtype) != target.scalar_type())
    throw checkpoint_error("tensor '" + name + "' has dtype " +
                           std::string(dtype_name(stored.dtype)) + ", the model expects " +
                           std::string(c10::toString(target.scalar_type())));
  if (stored.shape != target.sizes().vec())
    throw checkpoint_error("tensor '" + name + "' has shape " +
                           c10::str(c10::IntArrayRef(stored.shape)) + ", the model expects " +
                           c10::str(target.sizes()));
  torch::NoGradGuard no_grad;
  target.copy_(from_stored_tensor(stored));
}

int64_t metadata_int(const safetensors_content& content, const std::string& key) {
  auto it = content.metadata.find(key);
  if (it == content.metadata.end())
    throw checkpoint_error("checkpoint metadata has no '" + key + "'");
  try {
    size_t used = 0;
    auto v = std::stoll(it->second, &used);
    if (used != it->second.size())
      throw std::invalid_argument("trailing characters");
    return v;
  } catch (const std::exception&) {
    throw checkpoint_error("checkpoint metadata '" + key + "' is not an integer: '" +
                           it->second + "'");
  }
}

} // namespace

bool has_ema_tensors(const safetensors_content& content) {
  const auto it = content.metadata.find("ema");
  return it == content.metadata.end() || it->second != "none";
}

stored_tensor to_stored_tensor(const std::string& name, const torch::Tensor& tensor) {
  auto t = tensor.detach().to(torch::kCPU).contiguous();
  stored_tensor out;
  out.name = name;
  out.dtype = dtype_of(t);
  out.shape = t.sizes().vec();
  out.data.resize(static_cast<size_t>(t.numel()) * t.element_size());
  if (!out.data.empty())
    std::memcpy(out.data.data(), t.data_ptr(), out.data.size());
  return out;
}

torch::Tensor from_stored_tensor(const stored_tensor& stored) {
  auto t = torch::empty(stored.shape, torch::TensorOptions().dtype(scalar_type_of(stored.dtype)));
  if (static_cast<size_t>(t.numel()) * t.element_size() != stored.data.size())
    throw checkpoint_error("tensor '" + stored.name + "' has the wrong byte size");
  if (!stored.data.empty())
    std::memcpy(t.data_ptr(), stored.data.data(), stored.data.size());
  return t;
}

std::shared_ptr<safetensors_content>
snapshot_training_state(model_trainer& trainer, const training_progress& progress,
                        const std::map<std::string, std::string>& extra_metadata,
                        const std::map<std::string, torch::Tensor>& extra_tensors) {
  auto out = std::make_shared<safetensors_content>();
  for (const auto& item : trainer.module().named_parameters())
    out->tensors.push_back(to_stored_tensor("model." + item.key(), item.value()));
  if (trainer.has_ema())
    for (const auto& item : trainer.ema_module().named_parameters())
      out->tensors.push_back(to_stored_tensor("ema." + item.key(), item.value()));
  out->tensors.push_back(to_stored_tensor("optimizer.exp_avg", trainer.optimizer().exp_avg()));
  out->tensors.push_back(
    to_stored_tensor("optimizer.exp_avg_sq", trainer.optimizer().exp_avg_sq()));
  if (trainer.optimizer().options().sparse_catch_up)
    out->tensors.push_back(
      to_stored_tensor("optimizer.pending_rounds", trainer.optimizer().pending_rounds()));
  out->tensors.push_back(to_stored_tensor("trainer.rng_state", trainer.rng_state()));
  for (const auto& [name, tensor] : extra_tensors)
    out->tensors.push_back(to_stored_tensor(name, tensor));
  auto& m = out->metadata;
  m = extra_metadata;
  for (const auto& [key, value] : trainer.describe())
    m[key] = value;
  m["format"] = "ddactor-checkpoint-1";
  m["ema"] = trainer.has_ema() ? "yes" : "none";
  m["ddactor_version"] = version_string;
  m["step"] = std::to_string(progress.step);
  m["epoch"] = std::to_string(progress.epoch);
  m["data_epoch"] = std::to_string(progress.data_epoch);
  m["data_position"] = std::to_string(progress.data_position);
  m["optimizer_steps"] = std::to_string(trainer.optimizer().step_count());
  return out;
}

training_progress restore_training_state(const safetensors_content& content,
                                         model_trainer& trainer) {
  if (auto it = content.metadata.find("format");
      it == content.metadata.end() || it->second != "ddactor-checkpoint-1")
    throw checkpoint_error("not a ddactor training checkpoint (metadata 'format' missing)");
  training_progress progress;
  progress.step = metadata_int(content, "step");
  progress.epoch = content.metadata.count("epoch") > 0 ? metadata_int(content, "epoch")
                                                        : progress.step;
  progress.data_epoch = metadata_int(content, "data_epoch");
  progress.data_position = metadata_int(content, "data_position");
  auto optimizer_steps = metadata_int(content, "optimizer_steps");
  if (progress.step < 0 || progress.epoch < 0 || progress.data_epoch < 0 ||
      progress.data_position < 0 ||
      optimizer_steps < 0)
    throw checkpoint_error("checkpoint metadata holds negative counters");
  // Check everything before changing anything, so a bad file leaves the trainer untouched.
  auto check_only = [&](const std::string& name, const torch::Tensor& target) {
    const auto& stored = require(content, name);
    if (stored.shape != target.sizes().vec() ||
        scalar_type_of(stored.dtype) != target.scalar_type())
      throw checkpoint_error("tensor '" + name + "' does not fit the model (shape " +
                             c10::str(c10::IntArrayRef(stored.shape)) + " vs " +
                             c10::str(target.sizes()) + ")");
  };
  for (const auto& item : trainer.module().named_parameters())
    check_only("model." + item.key(), item.value());
  // An EMA the checkpoint lacks (it was written with the EMA off) starts from the weights.
  const bool restore_ema = trainer.has_ema() && has_ema_tensors(content);
  if (restore_ema)
    for (const auto& item : trainer.ema_module().named_parameters())
      check_only("ema." + item.key(), item.value());
  check_only("optimizer.exp_avg", trainer.optimizer().exp_avg());
  check_only("optimizer.exp_avg_sq", trainer.optimizer().exp_avg_sq());
  // Catch-up counts: kept when the checkpoint has them, zero when it was written without top-k.
  const bool has_pending_rounds = trainer.optimizer().options().sparse_catch_up &&
                                  content.find("optimizer.pending_rounds") != nullptr;
  if (has_pending_rounds)
    check_only("optimizer.pending_rounds", trainer.optimizer().pending_rounds());
  require(content, "trainer.rng_state");

  for (const auto& item : trainer.module().named_parameters())
    copy_into(content, "model." + item.key(), item.value());
  if (restore_ema) {
    for (const auto& item : trainer.ema_module().named_parameters())
      copy_into(content, "ema." + item.key(), item.value());
  } else if (trainer.has_ema()) {
    torch::NoGradGuard no_grad;
    trainer.ema_parameters().values().copy_(trainer.parameters().values());
  }
  copy_into(content, "optimizer.exp_avg", trainer.optimizer().exp_avg());
  copy_into(content, "optimizer.exp_avg_sq", trainer.optimizer().exp_avg_sq());
  if (has_pending_rounds)
    copy_into(content, "optimizer.pending_rounds", trainer.optimizer().pending_rounds());
  else if (trainer.optimizer().options().sparse_catch_up)
    trainer.optimizer().pending_rounds().zero_();
  try {
    trainer.set_rng_state(from_stored_tensor(require(content, "trainer.rng_state")));
  } catch (const c10::Error& e) {
    throw checkpoint_error("checkpoint's random state is invalid: " + e.msg());
  }
  trainer.optimizer().set_step_count(optimizer_steps);
  trainer.set_step(progress.step);
  return progress;
}

void load_weights(const safetensors_content& content, torch::nn::Module& model, bool use_ema) {
  const std::string prefix = use_ema && has_ema_tensors(content) ? "ema." : "model.";
  for (const auto& item : model.named_parameters())
    copy_into(content, prefix + item.key(), item.value());
}

dit_options model_options_of(const safetensors_content& content) {
  dit_options o;
  o.image_size = metadata_int(content, "model.image_size");
  o.in_channels = metadata_int(content, "model.in_channels");
  o.patch_size = metadata_int(content, "model.patch_size");
  o.hidden_size = metadata_int(content, "model.hidden_size");
  o.depth = metadata_int(content, "model.depth");
  o.num_heads = metadata_int(content, "model.num_heads");
  o.num_classes = metadata_int(content, "model.num_classes");
  o.caption.layers = metadata_int(content, "model.text_layers");
  o.caption.max_bytes = metadata_int(content, "model.text_max_bytes");
  o.caption.width = o.hidden_size;
  o.caption.num_heads = o.num_heads;
  // Written since the latent DiT; older checkpoints have no text-embedding context.
  if (content.metadata.count("model.context_length") != 0) {
    o.context_length = metadata_int(content, "model.context_length");
    o.context_width = metadata_int(content, "model.context_width");
  }
  auto it = content.metadata.find("model.conditioning");
  if (it == content.metadata.end())
    throw checkpoint_error("checkpoint metadata has no 'model.conditioning'");
  o.conditioning = it->second;
  auto ratio = content.metadata.find("model.mlp_ratio");
  if (ratio == content.metadata.end())
    throw checkpoint_error("checkpoint metadata has no 'model.mlp_ratio'");
  o.mlp_ratio = std::stod(ratio->second);
  return o;
}

} // namespace ddactor
