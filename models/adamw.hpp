#pragma once
// AdamW (Loshchilov & Hutter 2019) over one flat parameter vector: the optimizer state is two flat
// buffers and a step count, easy to checkpoint and to ship to a peer that joins late.
//
// Not thread-safe: owned by the training thread.

#include <torch/torch.h>

namespace ddactor {

struct adamw_options {
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;
};

class flat_adamw {
 public:
  flat_adamw(int64_t size, adamw_options options);

  /// One update of `params` in place with gradient `grads` at learning rate `lr`.
  void step(torch::Tensor& params, const torch::Tensor& grads, double lr);

  torch::Tensor& exp_avg() { return exp_avg_; }
  torch::Tensor& exp_avg_sq() { return exp_avg_sq_; }
  int64_t step_count() const { return step_count_; }
  void set_step_count(int64_t n) { step_count_ = n; }
  const adamw_options& options() const { return options_; }

 private:
  adamw_options options_;
  torch::Tensor exp_avg_;
  torch::Tensor exp_avg_sq_;
  int64_t step_count_ = 0;
};

} // namespace ddactor
