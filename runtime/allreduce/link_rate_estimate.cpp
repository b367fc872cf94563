// A peer's measured link rate; see link_rate_estimate.hpp.
#include "runtime/allreduce/link_rate_estimate.hpp"

#include <algorithm>
#include <cmath>

namespace ddactor {

namespace {

// Weight of a new sample: the estimate follows a changed link within a few rounds.
constexpr double sample_weight = 0.4;

} // namespace

void link_rate_estimate::blend(double& estimate, double sample) {
  if (!std::isfinite(sample) || sample <= 0)
    return;
  estimate = estimate == 0 ? sample : (1 - sample_weight) * estimate + sample_weight * sample;
}

void link_rate_estimate::add_download(double bytes, double seconds) {
  if (bytes >= min_sample_bytes && seconds > 0)
    blend(download_, bytes / seconds);
}

void link_rate_estimate::add_upload(double bytes_per_second, double bytes) {
  if (bytes >= min_sample_bytes)
    blend(upload_, bytes_per_second);
}

double link_rate_estimate::limiting() const {
  if (download_ > 0 && upload_ > 0)
    return std::min(download_, upload_);
  return std::max(download_, upload_);
}

} // namespace ddactor
