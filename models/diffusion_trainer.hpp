#pragma once
// The training of one DiT replica: flow-matching loss with logit-normal times and
// classifier-free-guidance dropout, on top of model_trainer's flat-buffer arithmetic. The trainer
// actor owns one and calls it; tests and benchmarks call it directly.
//
// Not thread-safe: one thread trains.

#include <torch/torch.h>

#include "models/dit.hpp"
#include "models/model_trainer.hpp"

namespace ddactor {

class diffusion_trainer : public model_trainer {
 public:
  diffusion_trainer(dit_options model_options, trainer_settings settings);

  /// The condition tensors of a batch (labels or caption tokens), without dropout.
  dit_condition condition_of(const training_batch& batch) const;

  dit& model() { return model_; }
  dit& ema_model() { return ema_model_; }
  const dit_options& model_options() const { return model_options_; }

  std::map<std::string, std::string> describe() const override;

 protected:
  torch::Tensor batch_loss(const training_batch& batch, at::Generator& generator) override;

  /// The flow-matching loss of clean inputs x0 (N, C, H, W) under `cond`: noise and times drawn
  /// from `generator`, the condition dropped to null with train.condition_dropout. For the slice
  /// of a node's batch (`batch`'s node_offset and node_count), the draws cover the node's batch
  /// and x0 takes its rows of them.
  torch::Tensor flow_loss(const torch::Tensor& x0, dit_condition cond, at::Generator& generator,
                          const training_batch& batch);

 private:
  dit_options model_options_;
  dit model_;
  dit ema_model_;
};

} // namespace ddactor
