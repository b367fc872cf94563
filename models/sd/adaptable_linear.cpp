// Linear layers with an optional low-rank adapter; see adaptable_linear.hpp.
#include "models/sd/adaptable_linear.hpp"

#include <cmath>

namespace ddactor {

namespace {

constexpr const char* adapter_child_name = "lora";

torch::nn::Linear bias_free(int64_t in, int64_t out) {
  return torch::nn::Linear(torch::nn::LinearOptions(in, out).bias(false));
}

} // namespace

low_rank_adapter_impl::low_rank_adapter_impl(int64_t in_features, int64_t out_features,
                                             int64_t rank, double alpha)
  : rank_(rank), alpha_(alpha) {
  TORCH_CHECK(rank > 0, "a low-rank adapter needs rank > 0, got ", rank);
  TORCH_CHECK(alpha > 0, "a low-rank adapter needs alpha > 0, got ", alpha);
  down = register_module("down", bias_free(in_features, rank));
  up = register_module("up", bias_free(rank, out_features));
  torch::NoGradGuard no_grad;
  // PEFT's reset_lora_parameters: kaiming_uniform_(A, a=sqrt(5)), zeros_(B).
  torch::nn::init::kaiming_uniform_(down->weight, std::sqrt(5.0));
  up->weight.zero_();
}

torch::Tensor low_rank_adapter_impl::forward(const torch::Tensor& x) {
  return up(down(x)) * scale();
}

torch::Tensor adaptable_linear_impl::forward(const torch::Tensor& input) {
  auto out = torch::nn::LinearImpl::forward(input);
  if (adapter_)
    out = out + adapter_(input);
  return out;
}

void adaptable_linear_impl::attach(low_rank_adapter adapter) {
  detach();
  adapter_ = register_module(adapter_child_name, std::move(adapter));
}

void adaptable_linear_impl::detach() {
  if (!adapter_)
    return;
  unregister_module(adapter_child_name);
  adapter_ = nullptr;
}

} // namespace ddactor
