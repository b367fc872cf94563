// Loading a DiT from a checkpoint for inference; see inference_model.hpp.
#include "app/inference_model.hpp"

#include <spdlog/spdlog.h>

#include "models/checkpoint.hpp"
#include "runtime/checkpoint_files.hpp"
#include "runtime/safetensors.hpp"

namespace ddactor {

namespace {

inference_model load_from(const std::filesystem::path& path, bool raw_weights) {
  auto content = read_safetensors_file(path);
  inference_model out;
  out.model = dit(model_options_of(content));
  load_weights(content, *out.model, !raw_weights);
  out.model->eval();
  out.checkpoint = path;
  auto step = content.metadata.find("step");
  out.step = step == content.metadata.end() ? 0 : std::stoll(step->second);
  return out;
}

} // namespace

inference_model load_inference_model(const run_config& config,
                                     const std::filesystem::path& checkpoint, bool raw_weights) {
  if (!checkpoint.empty())
    return load_from(checkpoint, raw_weights);
  auto files = list_checkpoints(config.run_dir());
  for (auto it = files.rbegin(); it != files.rend(); ++it) {
    try {
      return load_from(it->path, raw_weights);
    } catch (const std::exception& e) {
      spdlog::warn("skipping checkpoint {}: {}", it->path.string(), e.what());
    }
  }
  throw std::runtime_error("no usable checkpoint in " +
                           checkpoint_directory(config.run_dir()).string() +
                           " (train first, or pass --checkpoint)");
}

} // namespace ddactor
