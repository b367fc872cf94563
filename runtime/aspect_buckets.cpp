// Aspect-ratio buckets; see aspect_buckets.hpp.
#include "runtime/aspect_buckets.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

namespace ddactor {

std::vector<bucket_shape> aspect_buckets(int resolution, int step) {
  if (step < 1 || resolution < step || resolution % step != 0)
    throw std::invalid_argument("aspect buckets need a resolution that is a positive multiple of " +
                                std::to_string(step) + ", got " + std::to_string(resolution));
  const int64_t budget = int64_t{resolution} * resolution;
  const int min_side = (resolution / 2 + step - 1) / step * step;
  const int max_side = 2 * resolution;
  std::vector<bucket_shape> buckets;
  for (int width = min_side; width <= max_side; width += step) {
    const auto fits = budget / width / step * step;
    const int height = static_cast<int>(std::min<int64_t>(fits, max_side));
    if (height >= min_side)
      buckets.push_back({width, height});
  }
  // Portrait and landscape images of one shape must get transposed buckets: the loop above fills
  // heights, so add each bucket's transpose where it is missing.
  for (size_t i = 0, n = buckets.size(); i < n; ++i) {
    const bucket_shape transposed{buckets[i].height, buckets[i].width};
    if (std::find(buckets.begin(), buckets.end(), transposed) == buckets.end())
      buckets.push_back(transposed);
  }
  std::sort(buckets.begin(), buckets.end(), [](const bucket_shape& a, const bucket_shape& b) {
    const int64_t left = int64_t{a.width} * b.height, right = int64_t{b.width} * a.height;
    return left != right ? left < right : a.width < b.width;
  });
  return buckets;
}

size_t nearest_bucket(std::span<const bucket_shape> buckets, int width, int height) {
  if (buckets.empty() || width < 1 || height < 1)
    throw std::invalid_argument("nearest_bucket needs buckets and a positive image size");
  const double ratio = std::log(static_cast<double>(width) / height);
  size_t best = 0;
  double best_distance = INFINITY;
  int64_t best_area = 0;
  for (size_t i = 0; i < buckets.size(); ++i) {
    const auto& b = buckets[i];
    const double distance = std::abs(std::log(static_cast<double>(b.width) / b.height) - ratio);
    const int64_t area = int64_t{b.width} * b.height;
    // Ratios of different buckets are never equal in exact arithmetic unless the shapes scale;
    // compare with a little slack so that rounding does not decide a tie.
    if (distance < best_distance - 1e-12 ||
        (std::abs(distance - best_distance) <= 1e-12 && area > best_area)) {
      best = i;
      best_distance = distance;
      best_area = area;
    }
  }
  return best;
}

} // namespace ddactor
