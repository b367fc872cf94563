// Draws for a batch slice; see slice_draws.hpp.
#include "models/slice_draws.hpp"

#include <stdexcept>

namespace ddactor {

slice_draws::slice_draws(const training_batch& batch)
    : offset_(batch.node_offset),
      count_(batch.count),
      total_(batch.node_count > 0 ? batch.node_count : batch.count) {
  if (offset_ < 0 || offset_ + count_ > total_)
    throw std::invalid_argument("batch slice outside its node's batch");
}

torch::Tensor slice_draws::rows(const torch::Tensor& drawn) const {
  return total_ == count_ ? drawn : drawn.narrow(0, offset_, count_);
}

} // namespace ddactor
