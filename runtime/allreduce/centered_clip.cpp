// CenteredClip; see centered_clip.hpp.
#include "runtime/allreduce/centered_clip.hpp"

#include <algorithm>
#include <cmath>

namespace ddactor {

bool parse_aggregation_rule(std::string_view name, aggregation_settings::kind& rule) {
  if (name == "mean")
    rule = aggregation_settings::kind::mean;
  else if (name == "centered_clip")
    rule = aggregation_settings::kind::centered_clip;
  else
    return false;
  return true;
}

std::vector<float> centered_clip(const std::vector<std::span<const float>>& inputs,
                                 std::span<const double> weights,
                                 const aggregation_settings& settings) {
  const std::size_t n = inputs.size();
  const std::size_t length = inputs.front().size();
  // The start: the coordinate-wise median (the mean of the two middle values for an even n).
  std::vector<double> v(length);
  std::vector<double> column(n);
  for (std::size_t e = 0; e < length; ++e) {
    for (std::size_t i = 0; i < n; ++i)
      column[i] = inputs[i][e];
    std::sort(column.begin(), column.end());
    v[e] = n % 2 == 1 ? column[n / 2] : (column[n / 2 - 1] + column[n / 2]) / 2;
  }
  auto distance = [&](std::size_t i) {
    double sum = 0;
    for (std::size_t e = 0; e < length; ++e) {
      const double d = inputs[i][e] - v[e];
      sum += d * d;
    }
    return std::sqrt(sum);
  };
  double tau = settings.radius;
  std::vector<double> distances(n);
  if (tau <= 0) {
    for (std::size_t i = 0; i < n; ++i)
      distances[i] = distance(i);
    auto sorted = distances;
    std::sort(sorted.begin(), sorted.end());
    tau = sorted[(n - 1) / 2];
  }
  double total = 0;
  for (double w : weights)
    total += w;
  std::vector<double> step(length);
  for (int iteration = 0; iteration < settings.iterations; ++iteration) {
    std::fill(step.begin(), step.end(), 0.0);
    for (std::size_t i = 0; i < n; ++i) {
      const double d = distance(i);
      // tau 0 (every input at the start): nothing to move; otherwise scale the far ones down.
      const double scale = d <= tau ? 1.0 : (tau > 0 ? tau / d : 0.0);
      const double factor = weights[i] / total * scale;
      for (std::size_t e = 0; e < length; ++e)
        step[e] += factor * (inputs[i][e] - v[e]);
    }
    for (std::size_t e = 0; e < length; ++e)
      v[e] += step[e];
  }
  std::vector<float> out(length);
  for (std::size_t e = 0; e < length; ++e)
    out[e] = static_cast<float>(v[e]);
  return out;
}

} // namespace ddactor
