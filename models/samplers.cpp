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

flow_integration::flow_integration(torch::Tensor noise, int steps, sampler_kind kind)
  : x_(std::move(noise)), steps_(steps), kind_(kind) {
  if (steps < 1)
    throw std::invalid_argument("sampling needs at least one step");
}

void flow_integration::step(const velocity_field& v) {
  torch::NoGradGuard no_grad;
  const auto n = x_.size(0);
  const auto opts = torch::TensorOptions().dtype(x_.dtype()).device(x_.device());
  const double t_now = 1.0 - static_cast<double>(done_) / steps_;
  const double t_next = 1.0 - static_cast<double>(done_ + 1) / steps_;
  const double dt = t_next - t_now;  // negative: time runs from noise to data
  auto v_now = v(x_, torch::full({n}, t_now, opts));
  if (kind_ == sampler_kind::euler) {
    x_ = x_ + dt * v_now;
  } else {
    auto x_pred = x_ + dt * v_now;
    auto v_next = v(x_pred, torch::full({n}, t_next, opts));
    x_ = x_ + dt * 0.5 * (v_now + v_next);
  }
  ++done_;
}

torch::Tensor sample_flow(const velocity_field& v, torch::Tensor x, int steps, sampler_kind kind) {
  flow_integration integration(std::move(x), steps, kind);
  while (!integration.done())
    integration.step(v);
  return integration.current();
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
