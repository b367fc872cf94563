#pragma once
// An in-memory data set's images as one float tensor, for evaluation and baselines that want
// the whole set at once (training batches go through the data loader instead).

#include <torch/torch.h>

#include "runtime/image_dataset.hpp"

namespace ddactor {

/// (N, C, H, W) float32 in [-1, 1].
torch::Tensor dataset_images(const image_dataset& data);

} // namespace ddactor
