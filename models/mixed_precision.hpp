#pragma once
// Mixed-precision training (train.precision): autocast runs the forward and backward passes in
// bf16 or fp16 where that is safe (matrix products, convolutions) and in fp32 where it is not
// (reductions, softmax, norms), while the weights, gradients and optimizer state stay fp32
// ("master weights"). Averaging, checkpoints, digests and AdamW therefore see fp32 exactly as
// before, and peers of a swarm that apply the same averaged gradient stay bit-identical.
//
// bf16 has fp32's exponent range: no loss scaling. fp16 overflows at 65504, so its loss is scaled
// up before backward and its gradients scaled back (models/loss_scaler.hpp). LibTorch's CPU
// autocast supports bf16 only; fp16 needs a CUDA device.

#include <c10/core/DeviceType.h>
#include <c10/core/ScalarType.h>

#include <string>
#include <string_view>

namespace ddactor {

enum class training_precision { fp32, bf16, fp16 };

/// "fp32", "bf16" or "fp16"; anything else throws std::invalid_argument.
training_precision parse_training_precision(std::string_view name);
std::string_view to_string(training_precision precision) noexcept;

/// Whether LibTorch can autocast to `precision` on `device` (fp32 always: nothing to cast).
bool autocast_supported(training_precision precision, c10::DeviceType device) noexcept;

/// Autocast to `precision` on `device` while alive; fp32 changes nothing. Scopes nest (an inner
/// one restores the outer's settings); the cast-weight cache is cleared when the outermost ends.
class autocast_scope {
 public:
  autocast_scope(training_precision precision, c10::DeviceType device);
  ~autocast_scope();
  autocast_scope(const autocast_scope&) = delete;
  autocast_scope& operator=(const autocast_scope&) = delete;

 private:
  bool active_ = false;
  c10::DeviceType device_ = c10::DeviceType::CPU;
  bool was_enabled_ = false;
  c10::ScalarType previous_dtype_ = c10::ScalarType::Float;
};

} // namespace ddactor
