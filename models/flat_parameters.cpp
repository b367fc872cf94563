// Flat parameter and gradient buffers; see flat_parameters.hpp.
#include "models/flat_parameters.hpp"

#include <stdexcept>

namespace ddactor {

flat_parameters::flat_parameters(torch::nn::Module& module) {
  auto named = module.named_parameters(/*recurse=*/true);
  int64_t total = 0;
  for (const auto& item : named) {
    const auto& p = item.value();
    if (!p.requires_grad())
      continue;
    if (p.scalar_type() != torch::kFloat32)
      throw std::invalid_argument("flat_parameters supports float32 parameters only: " +
                                  item.key());
    entries_.push_back({item.key(), total, p.numel(), p.sizes().vec()});
    total += p.numel();
  }
  auto options = named.is_empty() ? torch::TensorOptions().dtype(torch::kFloat32)
                                   : named.values().front().options();
  values_ = torch::empty({total}, options.requires_grad(false));
  gradients_ = torch::zeros({total}, options.requires_grad(false));
  torch::NoGradGuard no_grad;
  size_t i = 0;
  for (auto& item : named) {
    auto& p = item.value();
    if (!p.requires_grad())
      continue;
    const auto& e = entries_[i++];
    auto value_view = view_of(values_, e);
    value_view.copy_(p);
    p.set_data(value_view);
    p.mutable_grad() = view_of(gradients_, e);
  }
}

torch::Tensor flat_parameters::view_of(const torch::Tensor& flat, const entry& e) const {
  return flat.narrow(0, e.offset, e.numel).view(e.shape);
}

} // namespace ddactor
