#pragma once
// One batch of training examples in host memory, as the data loader hands it to the trainer.
//
// Torch-free so that data loading never includes LibTorch; the trainer wraps `images` with
// torch::from_blob. Travels only between actors of one process (registered as a local-only
// message type), never over the network.

#include <cstdint>
#include <string>
#include <vector>

namespace ddactor {

struct training_batch {
  int64_t count = 0;
  int channels = 0;
  int height = 0;
  int width = 0;
  /// count * channels * height * width floats in [-1, 1], CHW per image.
  std::vector<float> images;
  /// Class labels (count entries) or empty.
  std::vector<int64_t> labels;
  /// Captions (count entries) or empty.
  std::vector<std::string> captions;
  /// DDM clusters (count entries) when training the router, or empty.
  std::vector<int64_t> clusters;
  /// Where the data order stands after this batch: resuming from (epoch, position) continues
  /// with the next batch.
  int64_t epoch_after = 0;
  int64_t position_after = 0;
  /// Which incarnation of the data loader made it; the trainer drops batches of a dead one.
  uint64_t loader_generation = 0;
};

} // namespace ddactor
