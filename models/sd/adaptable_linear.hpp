#pragma once
// A Linear layer that can carry a low-rank adapter (LoRA, Hu et al. 2021), the form in which the
// SD UNet's transformer blocks hold their Linear layers (attention projections, feed-forward,
// SD 2.x's linear proj_in/proj_out):
//
//   y = W x + b                            without an adapter (exactly torch::nn::Linear)
//   y = W x + b + scale * B (A x)          with one; A: rank x in ("down"), B: out x rank ("up"),
//                                          scale = alpha / rank
//
// The adapter is registered as the layer's child "lora" while attached, so a block's
// parameters() include A and B: activation checkpointing (which passes a block's parameters to
// the recomputation) then carries their gradients. The layer's own weight and bias keep their
// names, so a UNet without adapters has diffusers' state_dict exactly.
//
// A starts as PEFT initialises it (kaiming-uniform with a = sqrt(5), that is U(-1/sqrt(in),
// 1/sqrt(in))) and B at zero, so an attached adapter leaves the output unchanged until trained.

#include <torch/torch.h>

namespace ddactor {

struct low_rank_adapter_impl : torch::nn::Module {
  low_rank_adapter_impl(int64_t in_features, int64_t out_features, int64_t rank, double alpha);

  /// scale * up(down(x)).
  torch::Tensor forward(const torch::Tensor& x);

  int64_t rank() const { return rank_; }
  double alpha() const { return alpha_; }
  double scale() const { return alpha_ / static_cast<double>(rank_); }

  torch::nn::Linear down{nullptr};  // A (PEFT's lora_A), no bias
  torch::nn::Linear up{nullptr};    // B (PEFT's lora_B), no bias

private:
  int64_t rank_;
  double alpha_;
};
TORCH_MODULE_IMPL(low_rank_adapter, low_rank_adapter_impl);

struct adaptable_linear_impl : torch::nn::LinearImpl {
  using torch::nn::LinearImpl::LinearImpl;

  torch::Tensor forward(const torch::Tensor& input);

  /// Adds the adapter's output from now on (replacing any adapter attached before).
  void attach(low_rank_adapter adapter);
  void detach();
  const low_rank_adapter& adapter() const { return adapter_; }

private:
  low_rank_adapter adapter_{nullptr};
};
TORCH_MODULE_IMPL(adaptable_linear, adaptable_linear_impl);

} // namespace ddactor
