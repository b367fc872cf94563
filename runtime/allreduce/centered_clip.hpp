#pragma once
// CenteredClip (Karimireddy, He and Jaggi 2021; the aggregator of BTARD, Gorbunov et al. 2022):
// a weighted average that one hostile input cannot drag further than a radius. From a start v,
// each iteration moves v by the weighted mean of the inputs' differences x_i - v, each clipped
// to length tau:
//
//   v <- v + sum_i w_i (x_i - v) min(1, tau / |x_i - v|) / sum_i w_i
//
// Here v starts at the coordinate-wise median of the inputs (robust already, where the mean is
// not), and tau, unless given, is the median distance of the inputs from that start: the honest
// majority's spread. With every input inside tau of v the step is the plain weighted mean's.
// Arithmetic in double, inputs in a fixed order: the same inputs give the same bits on every
// peer, as the mean's reduction does (weighted_reduction.hpp).

#include <cstddef>
#include <span>
#include <string_view>
#include <vector>

namespace ddactor {

struct aggregation_settings {
  enum class kind { mean, centered_clip };
  kind rule = kind::mean;
  /// tau; 0: the median distance of the inputs from the coordinate-wise median.
  double radius = 0;
  int iterations = 3;
};

/// "mean" or "centered_clip"; nullopt-like false for anything else.
bool parse_aggregation_rule(std::string_view name, aggregation_settings::kind& rule);

/// The aggregate of equally long `inputs` with positive `weights`. Preconditions: at least one
/// input, weights.size() == inputs.size().
std::vector<float> centered_clip(const std::vector<std::span<const float>>& inputs,
                                 std::span<const double> weights,
                                 const aggregation_settings& settings);

} // namespace ddactor
