#pragma once
// The randomness of a loss for a batch that may be a slice of a larger one (a node's batch split
// over its trainers, a micro-batch, or both; runtime/training_batch_slice.hpp): every draw is
// made for the whole batch and the slice keeps its rows, so an example's noise, time and dropout
// do not depend on how the batch was split (the generator must be in the same state for every
// slice: each trainer of a node starts alike; micro-batches restore it).

#include <torch/torch.h>

#include <cstdint>

#include "runtime/training_batch.hpp"

namespace ddactor {

class slice_draws {
 public:
  /// Throws std::invalid_argument when the slice lies outside its whole.
  explicit slice_draws(const training_batch& batch);

  /// Examples in the whole batch (the first dimension of every draw).
  int64_t total() const { return total_; }

  /// This slice's rows of a tensor drawn for the whole batch.
  torch::Tensor rows(const torch::Tensor& drawn) const;

 private:
  int64_t offset_ = 0;
  int64_t count_ = 0;
  int64_t total_ = 0;
};

} // namespace ddactor
