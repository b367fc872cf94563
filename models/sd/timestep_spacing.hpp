#pragma once
// Where the sampling steps of a discrete-time diffusion model fall among its training timesteps
// (0 .. T-1), for each scheduler family, exactly as diffusers v0.25.1 computes them with numpy
// (the same float64 arithmetic, numpy's half-to-even rounding), because a timestep one off gives
// the UNet another input and the sampler another noise level:
//
//   spacing   DDPM / DDIM (n steps)           EulerDiscrete           DPMSolverMultistep
//   leading   k * (T // n) + offset           same, as float32        k * (T // (n+1)) + offset,
//                                                                     the lowest point dropped
//   linspace  round(linspace(0, T-1, n))      linspace(0, T-1, n) as  round(linspace(0, T-1,
//                                             float32, unrounded      n+1)), 0 dropped
//   trailing  round(arange(T, 0, -T/n)) - 1   same, as float32        same as DDIM
//
// all in descending order. Pure code: no LibTorch.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace ddactor {

enum class timestep_spacing { leading, linspace, trailing };

// "leading", "linspace" or "trailing"; nullopt otherwise.
std::optional<timestep_spacing> parse_timestep_spacing(const std::string& name);
const char* timestep_spacing_name(timestep_spacing spacing);

// What every family needs to place its steps.
struct timestep_grid {
  int64_t num_train_timesteps = 1000;
  timestep_spacing spacing = timestep_spacing::leading;
  int64_t steps_offset = 0;  // added under "leading" only, as diffusers does
};

// DDPMScheduler / DDIMScheduler.set_timesteps(steps). All three functions throw
// std::invalid_argument unless 1 <= steps <= num_train_timesteps.
std::vector<int64_t> ddim_timesteps(const timestep_grid& grid, int64_t steps);
// EulerDiscreteScheduler.set_timesteps(steps): fractional under "linspace".
std::vector<float> euler_timesteps(const timestep_grid& grid, int64_t steps);
// DPMSolverMultistepScheduler.set_timesteps(steps), for lambda_min_clipped = -inf.
std::vector<int64_t> dpm_solver_timesteps(const timestep_grid& grid, int64_t steps);

// numpy's float64 grids, as numpy computes them (start + i * step, the end point set exactly;
// arange's later points from the difference of its first two).
std::vector<double> numpy_linspace(double start, double stop, int64_t num);
std::vector<double> numpy_arange(double start, double stop, double step);

} // namespace ddactor
