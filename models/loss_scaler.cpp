#include "models/loss_scaler.hpp"

#include <algorithm>
#include <cmath>

namespace ddactor {

loss_scaler::loss_scaler(loss_scaler_options options)
  : options_(options), scale_(options.initial_scale) {}

bool loss_scaler::update(bool gradients_finite) noexcept {
  if (!gradients_finite) {
    scale_ = std::max(options_.min_scale, scale_ * options_.backoff_factor);
    good_in_a_row_ = 0;
    ++skipped_;
    return false;
  }
  if (++good_in_a_row_ >= options_.growth_interval) {
    scale_ = std::min(options_.max_scale, scale_ * options_.growth_factor);
    good_in_a_row_ = 0;
  }
  return true;
}

void loss_scaler::restore(double scale, int64_t good_in_a_row) noexcept {
  if (std::isfinite(scale) && scale >= options_.min_scale && scale <= options_.max_scale)
    scale_ = scale;
  good_in_a_row_ = std::clamp<int64_t>(good_in_a_row, 0, options_.growth_interval - 1);
}

} // namespace ddactor
