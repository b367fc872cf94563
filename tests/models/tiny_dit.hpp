#pragma once
// A DiT small enough for unit tests (8x8 grey images, 2 classes) and a batch it can learn: class
// 0 is a bright left half, class 1 a bright top half.
#include "models/dit.hpp"
#include "runtime/training_batch.hpp"

namespace ddactor::tiny_dit {

inline dit_options model() {
  dit_options o;
  o.image_size = 8;
  o.in_channels = 1;
  o.patch_size = 2;
  o.hidden_size = 32;
  o.depth = 2;
  o.num_heads = 4;
  o.num_classes = 2;
  return o;
}

inline training_batch fixed_batch(int64_t n) {
  training_batch b;
  b.count = n;
  b.channels = 1;
  b.height = b.width = 8;
  b.images.resize(static_cast<size_t>(n * 64));
  for (int64_t i = 0; i < n; ++i) {
    b.labels.push_back(i % 2);
    for (int y = 0; y < 8; ++y)
      for (int x = 0; x < 8; ++x)
        b.images[static_cast<size_t>(i * 64 + y * 8 + x)] =
          ((i % 2 == 0) ? (x < 4) : (y < 4)) ? 1.0f : -1.0f;
  }
  return b;
}

} // namespace ddactor::tiny_dit
