#include "models/mixed_precision.hpp"

#include <ATen/autocast_mode.h>
#include <torch/version.h>

#include <stdexcept>

// LibTorch 2.4 made autocast's switches per device type and deprecated the per-backend ones.
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
#define DDACTOR_AUTOCAST_BY_DEVICE_TYPE 1
#endif

namespace ddactor {

namespace {

bool autocast_enabled(c10::DeviceType device) {
#ifdef DDACTOR_AUTOCAST_BY_DEVICE_TYPE
  return at::autocast::is_autocast_enabled(device);
#else
  return device == c10::DeviceType::CUDA ? at::autocast::is_enabled()
                                         : at::autocast::is_cpu_enabled();
#endif
}

void set_autocast_enabled(c10::DeviceType device, bool enabled) {
#ifdef DDACTOR_AUTOCAST_BY_DEVICE_TYPE
  at::autocast::set_autocast_enabled(device, enabled);
#else
  if (device == c10::DeviceType::CUDA)
    at::autocast::set_enabled(enabled);
  else
    at::autocast::set_cpu_enabled(enabled);
#endif
}

c10::ScalarType autocast_dtype(c10::DeviceType device) {
#ifdef DDACTOR_AUTOCAST_BY_DEVICE_TYPE
  return at::autocast::get_autocast_dtype(device);
#else
  return device == c10::DeviceType::CUDA ? at::autocast::get_autocast_gpu_dtype()
                                         : at::autocast::get_autocast_cpu_dtype();
#endif
}

void set_autocast_dtype(c10::DeviceType device, c10::ScalarType dtype) {
#ifdef DDACTOR_AUTOCAST_BY_DEVICE_TYPE
  at::autocast::set_autocast_dtype(device, dtype);
#else
  if (device == c10::DeviceType::CUDA)
    at::autocast::set_autocast_gpu_dtype(dtype);
  else
    at::autocast::set_autocast_cpu_dtype(dtype);
#endif
}

} // namespace

training_precision parse_training_precision(std::string_view name) {
  if (name == "fp32")
    return training_precision::fp32;
  if (name == "bf16")
    return training_precision::bf16;
  if (name == "fp16")
    return training_precision::fp16;
  throw std::invalid_argument("unknown precision \"" + std::string(name) +
                              "\" (\"fp32\", \"bf16\" or \"fp16\")");
}

std::string_view to_string(training_precision precision) noexcept {
  switch (precision) {
    case training_precision::fp32: return "fp32";
    case training_precision::bf16: return "bf16";
    case training_precision::fp16: return "fp16";
  }
  return "fp32";
}

bool autocast_supported(training_precision precision, c10::DeviceType device) noexcept {
  switch (precision) {
    case training_precision::fp32: return true;
    case training_precision::bf16:
      return device == c10::DeviceType::CPU || device == c10::DeviceType::CUDA;
    case training_precision::fp16: return device == c10::DeviceType::CUDA;
  }
  return false;
}

autocast_scope::autocast_scope(training_precision precision, c10::DeviceType device)
  : device_(device) {
  if (precision == training_precision::fp32)
    return;
  if (!autocast_supported(precision, device))
    throw std::invalid_argument("autocast to " + std::string(to_string(precision)) +
                                " is not supported on " + c10::DeviceTypeName(device));
  active_ = true;
  was_enabled_ = autocast_enabled(device);
  previous_dtype_ = autocast_dtype(device);
  set_autocast_dtype(device, precision == training_precision::bf16 ? c10::ScalarType::BFloat16
                                                                    : c10::ScalarType::Half);
  set_autocast_enabled(device, true);
  at::autocast::increment_nesting();
}

autocast_scope::~autocast_scope() {
  if (!active_)
    return;
  // Casts of the weights are cached while autocast is on; they would go stale after the step.
  if (at::autocast::decrement_nesting() == 0)
    at::autocast::clear_cache();
  set_autocast_enabled(device_, was_enabled_);
  set_autocast_dtype(device_, previous_dtype_);
}

} // namespace ddactor
