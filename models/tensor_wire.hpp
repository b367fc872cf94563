#pragma once
// torch::Tensor <-> tensor_blob, for tensors that cross the network outside the all-reduce (DDM
// serving: noisy images to a remote expert, velocities back). Float32 only; decoding validates
// the checksum, the shape against what the receiver expects, and that every value is finite.

#include <torch/torch.h>

#include <stdexcept>
#include <vector>

#include "runtime/tensor_blob.hpp"

namespace ddactor {

/// A sealed float32 blob with the tensor's shape.
tensor_blob tensor_to_blob(const torch::Tensor& tensor);

/// The tensor of a blob whose shape must equal `expected_shape` (-1 entries match any size up to
/// `max_dim`). Throws std::invalid_argument naming what is wrong.
torch::Tensor blob_to_tensor(const tensor_blob& blob, const std::vector<int64_t>& expected_shape,
                             int64_t max_dim = 4096);

} // namespace ddactor
