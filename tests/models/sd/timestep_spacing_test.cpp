// Tests of the inference timesteps of each scheduler family against the values diffusers
// v0.25.1's numpy expressions give (numpy 1.24.2, T = 1000, steps_offset = 1) for 7 and 3 steps
// under every spacing: half-to-even rounding (499.5 -> 500, 832.5 -> 832), arange's
// accumulated float steps under "trailing", DPM-Solver's n + 1 point grids.
#include "models/sd/timestep_spacing.hpp"

#include <gtest/gtest.h>

#include <stdexcept>

namespace ddactor {
namespace {

using ints = std::vector<int64_t>;
using floats = std::vector<float>;

timestep_grid grid(timestep_spacing spacing) { return {1000, spacing, 1}; }

TEST(timestep_spacing, leading_steps_are_multiples_of_the_ratio_plus_the_offset) {
  const auto g = grid(timestep_spacing::leading);
  EXPECT_EQ(ddim_timesteps(g, 7), (ints{853, 711, 569, 427, 285, 143, 1}));
  EXPECT_EQ(ddim_timesteps(g, 3), (ints{667, 334, 1}));
  EXPECT_EQ(euler_timesteps(g, 7), (floats{853, 711, 569, 427, 285, 143, 1}));
  EXPECT_EQ(dpm_solver_timesteps(g, 7), (ints{876, 751, 626, 501, 376, 251, 126}));
  EXPECT_EQ(dpm_solver_timesteps(g, 3), (ints{751, 501, 251}));
}

TEST(timestep_spacing, linspace_rounds_half_to_even_and_euler_keeps_fractions) {
  const auto g = grid(timestep_spacing::linspace);
  EXPECT_EQ(ddim_timesteps(g, 7), (ints{999, 832, 666, 500, 333, 166, 0}));
  EXPECT_EQ(ddim_timesteps(g, 3), (ints{999, 500, 0}));
  EXPECT_EQ(euler_timesteps(g, 7), (floats{999.0f, 832.5f, 666.0f, 499.5f, 333.0f, 166.5f, 0.0f}));
  EXPECT_EQ(dpm_solver_timesteps(g, 7), (ints{999, 856, 714, 571, 428, 285, 143}));
  EXPECT_EQ(dpm_solver_timesteps(g, 3), (ints{999, 666, 333}));
}

TEST(timestep_spacing, trailing_counts_down_from_the_last_timestep) {
  const auto g = grid(timestep_spacing::trailing);
  EXPECT_EQ(ddim_timesteps(g, 7), (ints{999, 856, 713, 570, 428, 285, 142}));
  EXPECT_EQ(ddim_timesteps(g, 3), (ints{999, 666, 332}));
  EXPECT_EQ(euler_timesteps(g, 7), (floats{999, 856, 713, 570, 428, 285, 142}));
  EXPECT_EQ(dpm_solver_timesteps(g, 7), (ints{999, 856, 713, 570, 428, 285, 142}));
}

TEST(timestep_spacing, numpy_grids_match_numpy_to_the_bit) {
  // np.arange(1000, 0, -1000/7): later points from the difference of the first two.
  const std::vector<double> arange = {1000.0, 857.1428571428571, 714.2857142857142,
                                      571.4285714285713, 428.57142857142844, 285.71428571428555,
                                      142.85714285714266};
  EXPECT_EQ(numpy_arange(1000.0, 0.0, -1000.0 / 7), arange);
  EXPECT_EQ(numpy_linspace(0, 999, 3), (std::vector<double>{0.0, 499.5, 999.0}));
  EXPECT_EQ(numpy_linspace(2, 5, 1), (std::vector<double>{2.0}));
  EXPECT_TRUE(numpy_arange(0.0, 5.0, -1.0).empty());
}

TEST(timestep_spacing, step_counts_outside_the_training_range_are_refused) {
  const auto g = grid(timestep_spacing::leading);
  EXPECT_THROW(ddim_timesteps(g, 0), std::invalid_argument);
  EXPECT_THROW(euler_timesteps(g, 1001), std::invalid_argument);
  EXPECT_THROW(dpm_solver_timesteps(g, -3), std::invalid_argument);
  EXPECT_EQ(ddim_timesteps(g, 1000).size(), 1000u);
  EXPECT_EQ(parse_timestep_spacing("trailing"), timestep_spacing::trailing);
  EXPECT_EQ(parse_timestep_spacing("karras"), std::nullopt);
}

} // namespace
} // namespace ddactor
