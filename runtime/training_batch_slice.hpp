#pragma once
// A slice of a training batch: examples [offset, offset + count) with every per-example buffer
// cut alike, and node_offset/node_count saying where the slice sits in the whole (the node's
// batch when the batch is already a node's slice). A loss that draws its randomness for the
// whole and keeps its slice's rows (models/slice_draws.hpp) gives every example the draws it
// would get unsplit: micro-batches (data.micro_batch_size) then add up to the batch's gradient.
//
// Torch-free, like training_batch.

#include <cstdint>

#include "runtime/training_batch.hpp"

namespace ddactor {

/// Examples [offset, offset + count) of `batch` (copied). Throws std::invalid_argument when the
/// range is outside the batch or the batch's buffers do not match its shapes.
training_batch slice_of_batch(const training_batch& batch, int64_t offset, int64_t count);

} // namespace ddactor
