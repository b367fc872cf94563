#pragma once
// AdamW (Loshchilov & Hutter 2019) over one flat parameter vector: the optimizer state is two flat
// buffers and a step count, easy to checkpoint and to ship to a peer that joins late.
//
// Sparse catch-up (adamw_options::sparse_catch_up, for gradients averaged with top-k and error
// feedback). Top-k sends a coordinate's gradients of c rounds as one sum s in one round and zeros
// in between. Plain AdamW takes s as one huge gradient: the second moment grows with s^2, so the
// coordinate's total step over those c rounds shrinks by about sqrt(c) (a 4-peer swarm at 5 %
// top-k ended at 1.27x the validation loss of float32 averaging). With catch-up, a zero means
// "not sent yet": the coordinate, its moments and its count of pending rounds wait. When s
// arrives it counts as c rounds of s / c: both moments take c EMA steps at once (factor beta^c)
// and the parameter moves c steps. Weight decay still applies every round. The counts are state
// like the moments: every peer applies the same averaged vector, so they agree, and they travel
// in checkpoints and to joiners.
//
// Not thread-safe: owned by the training thread.

#include <torch/torch.h>

namespace ddactor {

struct adamw_options {
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;
  /// Zeros in a gradient are "not sent yet" (see above).
  bool sparse_catch_up = false;
};

class flat_adamw {
 public:
  /// Its state lives on `device`, beside the parameters it updates.
  flat_adamw(int64_t size, adamw_options options, const torch::Device& device = torch::kCPU);

  /// One update of `params` in place with gradient `grads` at learning rate `lr`.
  void step(torch::Tensor& params, const torch::Tensor& grads, double lr);

  /// A step with a guess of another gradient: averaging.step_ahead steps with this peer's own
  /// gradient, which stands for the swarm's average of which its samples are `own_share`, and
  /// takes the step back when the average arrives. The second moment takes `own_share` of the
  /// guess's square and the rest of its own bias-corrected estimate: a share's noise inflates
  /// the square (about 1 / own_share times the average's noise), and a moment too large makes
  /// every peer's guess fall short of the swarm's step alike, a bias the guesses share that
  /// does not cancel in the mean as their noise does. The first step (no estimate yet) and
  /// sparse catch-up take the square, as step() does.
  void guess_step(torch::Tensor& params, const torch::Tensor& grads, double lr,
                  double own_share);

  torch::Tensor& exp_avg() { return exp_avg_; }
  torch::Tensor& exp_avg_sq() { return exp_avg_sq_; }
  /// Sparse catch-up only (empty otherwise): rounds since each coordinate last had a gradient.
  torch::Tensor& pending_rounds() { return pending_rounds_; }
  int64_t step_count() const { return step_count_; }
  void set_step_count(int64_t n) { step_count_ = n; }
  const adamw_options& options() const { return options_; }

 private:
  void step_with_square_weight(torch::Tensor& params, const torch::Tensor& grads, double lr,
                               double square_weight);
  /// `square_weight`: how much of the gradient's square the second moment takes (guess_step).
  void dense_step(torch::Tensor& params, const torch::Tensor& grads, double lr,
                  double square_weight);
  void catch_up_step(torch::Tensor& params, const torch::Tensor& grads, double lr);

  adamw_options options_;
  torch::Tensor exp_avg_;
  torch::Tensor exp_avg_sq_;
  torch::Tensor pending_rounds_;
  int64_t step_count_ = 0;
};

} // namespace ddactor
