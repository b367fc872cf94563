#pragma once
// Loading a trained DiT for sampling or evaluation: the given checkpoint, or the newest readable
// one of the run; its shape comes from the checkpoint's metadata, not from the config, so a
// changed config cannot silently mismatch.

#include <filesystem>

#include "config/run_config.hpp"
#include "models/dit.hpp"

namespace ddactor {

struct inference_model {
  dit model{nullptr};
  std::filesystem::path checkpoint;
  int64_t step = 0;
};

/// Throws std::runtime_error naming the folder when there is no usable checkpoint.
inference_model load_inference_model(const run_config& config,
                                     const std::filesystem::path& checkpoint, bool raw_weights);

} // namespace ddactor
