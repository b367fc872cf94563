// Euler and Heun flow samplers with classifier-free guidance; see samplers.hpp.
#include "models/samplers.hpp"

#include <stdexcept>

namespace ddactor {

sampler_kind parse_sampler(const std::string& name) {
  if (name == "euler")
    return sampler_kind::euler;
  if (name == "heun")
    return sampler_kind::heun;
  throw std::invalid_argument("unknown sampler '" + name + "' (expected euler or heun)");
}

torch::Tensor sample_flow(const velocity_field& v, torch::Tensor x, int steps, sampler_kind kind) {
  if (steps < 1)
    throw std::invalid_argument("sampling needs at least one step");
  torch::NoGradGuard no_grad;
  auto n = x.size(0);
  auto opts = torch::TensorOptions().dtype(x.dtype()).device(x.device());
  for (int i = 0; i < steps; ++i) {
    double t_now = 1.0 - static_cast<double>(i) / steps;
    double t_next = 1.0 - static_cast<double>(i + 1) / steps;
    double dt = t_next - t_now;  // negative: time runs from noise to data
    auto v_now = v(x, torch::full({n}, t_now, opts));
    if (kind == sampler_kind::euler) {
      x = x + dt * v_now;
      continue;
    }
    auto x_pred = x + dt * v_now;
    auto v_next = v(x_pred, torch::full({n}, t_next, opts));
    x = x + dt * 0.5 * (v_now + v_next);
  }
  return x;
}

velocity_field guided_velocity(dit model, dit_condition cond, double scale) {
  if (scale == 1.0)
    return [model, cond](const torch::Tensor& x, const torch::Tensor& t) mutable {
      return model->forward(x, t, cond);
    };
  auto both = cond.concat(cond.as_null());
  return [model, both, scale](const torch::Tensor& x, const torch::Tensor& t) mutable {
    auto v = model->forward(torch::cat({x, x}, 0), torch::cat({t, t}, 0), both);
    auto halves = v.chunk(2, 0);
    return halves[1] + scale * (halves[0] - halves[1]);
  };
}

} // namespace ddactor
