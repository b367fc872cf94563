#pragma once
// Dynamic loss scaling for fp16 training, as a plain rule: the loss is multiplied by scale()
// before backward so that small gradients survive fp16, and the gradients are divided by it
// before the step. A step whose gradients hold an inf or NaN is skipped and the scale shrinks
// (backoff); after growth_interval good steps in a row it grows again. These are the rules of
// PyTorch's GradScaler (Micikevicius et al. 2018, "Mixed Precision Training").
//
// In a swarm the decision is taken on the averaged gradient, which is the same for every peer of
// a round, so every peer skips the same steps and keeps the same scale: their weights stay
// bit-identical.

#include <cstdint>

namespace ddactor {

struct loss_scaler_options {
  double initial_scale = 65536.0;  // 2^16
  double growth_factor = 2.0;
  double backoff_factor = 0.5;
  int64_t growth_interval = 2000;  // good steps in a row before the scale grows
  double min_scale = 1.0;
  double max_scale = 16777216.0;   // 2^24: well below fp32's range for any sane loss
};

class loss_scaler {
 public:
  explicit loss_scaler(loss_scaler_options options = {});

  double scale() const noexcept { return scale_; }
  /// After a step's gradients are known: true when the step is taken (all finite), false when it
  /// is skipped. Updates the scale either way.
  bool update(bool gradients_finite) noexcept;

  int64_t skipped_steps() const noexcept { return skipped_; }
  int64_t good_steps_in_a_row() const noexcept { return good_in_a_row_; }

  /// For checkpoints: a resumed run continues with the same scale and count.
  void restore(double scale, int64_t good_in_a_row) noexcept;

 private:
  loss_scaler_options options_;
  double scale_;
  int64_t good_in_a_row_ = 0;
  int64_t skipped_ = 0;
};

} // namespace ddactor
