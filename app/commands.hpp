#pragma once
// The commands of the ddactor binary. Each returns the process exit code.

#include <filesystem>
#include <optional>
#include <string>

#include "config/run_config.hpp"

namespace ddactor {

/// `ddactor --config run.toml` / `ddactor train`: runs a peer until its step or time limit, or
/// until Ctrl-C (which checkpoints first).
int train_command(const run_config& config);

struct sample_request {
  std::filesystem::path out = "samples.png";
  std::optional<int> class_index;
  std::optional<std::string> prompt;
  /// Images per class/prompt (0: sample.per_class).
  int count = 0;
  std::optional<int> steps;
  std::optional<std::string> sampler;
  std::optional<double> cfg_scale;
  std::optional<uint64_t> seed;
  /// Empty: the newest checkpoint of the run.
  std::filesystem::path checkpoint;
  /// Sample with the raw weights instead of the EMA weights.
  bool raw_weights = false;
};

/// `ddactor sample`: writes a PNG grid generated from a checkpoint.
int sample_command(const run_config& config, const sample_request& request);

struct eval_request {
  std::filesystem::path checkpoint;
  bool raw_weights = false;
};

/// `ddactor eval`: Frechet distance and class accuracy of generated images.
int eval_command(const run_config& config, const eval_request& request);

} // namespace ddactor
