// Inference timesteps of the DDIM, Euler and DPM-Solver families; see timestep_spacing.hpp.
#include "models/sd/timestep_spacing.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace ddactor {

namespace {

// numpy's round(): to nearest, ties to even (499.5 -> 500, 500.5 -> 500).
double round_half_even(double x) {
  return std::nearbyint(x);  // the default rounding mode is round-to-nearest-even
}

void check_steps(const timestep_grid& grid, int64_t steps) {
  if (steps < 1 || steps > grid.num_train_timesteps)
    throw std::invalid_argument("sampling steps must be from 1 to num_train_timesteps (" +
                                std::to_string(grid.num_train_timesteps) + "), not " +
                                std::to_string(steps));
}

// The points of the "leading" grid: k * ratio for k = count-1 .. 0, plus the offset.
std::vector<int64_t> leading_points(int64_t count, int64_t ratio, int64_t offset) {
  std::vector<int64_t> points;
  for (int64_t k = count - 1; k >= 0; --k) points.push_back(k * ratio + offset);
  return points;
}

// The "trailing" grid before its final shift by -1: round(arange(T, 0, -T/steps)).
std::vector<double> trailing_points(const timestep_grid& grid, int64_t steps) {
  const double ratio = static_cast<double>(grid.num_train_timesteps) / static_cast<double>(steps);
  std::vector<double> points =
      numpy_arange(static_cast<double>(grid.num_train_timesteps), 0.0, -ratio);
  for (double& p : points) p = round_half_even(p);
  return points;
}

} // namespace

std::optional<timestep_spacing> parse_timestep_spacing(const std::string& name) {
  if (name == "leading") return timestep_spacing::leading;
  if (name == "linspace") return timestep_spacing::linspace;
  if (name == "trailing") return timestep_spacing::trailing;
  return std::nullopt;
}

const char* timestep_spacing_name(timestep_spacing spacing) {
  switch (spacing) {
    case timestep_spacing::leading: return "leading";
    case timestep_spacing::linspace: return "linspace";
    case timestep_spacing::trailing: return "trailing";
  }
  return "?";
}

std::vector<double> numpy_linspace(double start, double stop, int64_t num) {
  std::vector<double> points(static_cast<size_t>(std::max<int64_t>(num, 0)));
  if (num == 1) points[0] = start;
  if (num < 2) return points;
  const double step = (stop - start) / static_cast<double>(num - 1);
  for (int64_t i = 0; i < num; ++i) points[i] = static_cast<double>(i) * step + start;
  points.back() = stop;
  return points;
}

std::vector<double> numpy_arange(double start, double stop, double step) {
  const double length = std::ceil((stop - start) / step);
  if (!(length > 0)) return {};
  std::vector<double> points(static_cast<size_t>(length));
  points[0] = start;
  if (points.size() > 1) points[1] = start + step;
  // numpy fills the rest from the first two points, not from `step` itself.
  const double delta = points.size() > 1 ? points[1] - points[0] : step;
  for (size_t i = 2; i < points.size(); ++i) points[i] = start + static_cast<double>(i) * delta;
  return points;
}

std::vector<int64_t> ddim_timesteps(const timestep_grid& grid, int64_t steps) {
  check_steps(grid, steps);
  const int64_t last = grid.num_train_timesteps - 1;
  std::vector<int64_t> out;
  switch (grid.spacing) {
    case timestep_spacing::leading:
      return leading_points(steps, grid.num_train_timesteps / steps, grid.steps_offset);
    case timestep_spacing::linspace:
      for (double p : numpy_linspace(0.0, static_cast<double>(last), steps))
        out.push_back(static_cast<int64_t>(round_half_even(p)));
      std::reverse(out.begin(), out.end());
      return out;
    case timestep_spacing::trailing:
      for (double p : trailing_points(grid, steps)) out.push_back(static_cast<int64_t>(p) - 1);
      return out;
  }
  return out;
}

std::vector<float> euler_timesteps(const timestep_grid& grid, int64_t steps) {
  check_steps(grid, steps);
  const int64_t last = grid.num_train_timesteps - 1;
  std::vector<float> out;
  switch (grid.spacing) {
    case timestep_spacing::leading:
      for (int64_t t : leading_points(steps, grid.num_train_timesteps / steps, 0))
        out.push_back(static_cast<float>(t) + static_cast<float>(grid.steps_offset));
      return out;
    case timestep_spacing::linspace:
      for (double p : numpy_linspace(0.0, static_cast<double>(last), steps))
        out.push_back(static_cast<float>(p));
      std::reverse(out.begin(), out.end());
      return out;
    case timestep_spacing::trailing:
      for (double p : trailing_points(grid, steps)) out.push_back(static_cast<float>(p) - 1.0f);
      return out;
  }
  return out;
}

std::vector<int64_t> dpm_solver_timesteps(const timestep_grid& grid, int64_t steps) {
  check_steps(grid, steps);
  // The last timestep the grid may reach; lambda_min_clipped = -inf clips nothing.
  const int64_t last_timestep = grid.num_train_timesteps;
  std::vector<int64_t> out;
  switch (grid.spacing) {
    case timestep_spacing::leading:
      out = leading_points(steps + 1, last_timestep / (steps + 1), grid.steps_offset);
      out.pop_back();
      return out;
    case timestep_spacing::linspace:
      for (double p : numpy_linspace(0.0, static_cast<double>(last_timestep - 1), steps + 1))
        out.push_back(static_cast<int64_t>(round_half_even(p)));
      std::reverse(out.begin(), out.end());
      out.pop_back();
      return out;
    case timestep_spacing::trailing:
      for (double p : trailing_points(grid, steps)) out.push_back(static_cast<int64_t>(p) - 1);
      return out;
  }
  return out;
}

} // namespace ddactor
