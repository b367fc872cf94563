#pragma once
// What a ddactor checkpoint holds and how it maps to safetensors tensors:
//
//   model.<parameter name>        the trained weights, one tensor each (Python reads them by name)
//   ema.<parameter name>          the EMA weights used for sampling (absent when the trainer
//                                 keeps no EMA; metadata "ema" is "none" then)
//   optimizer.exp_avg             AdamW first moments, flat
//   optimizer.exp_avg_sq          AdamW second moments, flat
//   optimizer.pending_rounds      AdamW catch-up counts, flat (only with top-k; see adamw.hpp)
//   trainer.rng_state             the noise/time random stream (uint8)
//   __metadata__                  step, data order (epoch, position), optimizer step count,
//                                 model shape, the run's effective config, ddactor version
//
// Restoring checks every name, shape and dtype against the model and refuses a mismatch with a
// clear error rather than loading part of it.

#include <torch/torch.h>

#include <map>
#include <memory>
#include <stdexcept>
#include <string>

#include "models/dit.hpp"
#include "models/model_trainer.hpp"
#include "runtime/safetensors.hpp"

namespace ddactor {

class checkpoint_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Where training stands, besides the tensors.
struct training_progress {
  int64_t step = 0;
  /// The swarm's global epoch (equal to step for a lone peer or gradient averaging).
  int64_t epoch = 0;
  int64_t data_epoch = 0;
  int64_t data_position = 0;
};

/// Copies the whole training state out of the trainer (on the training thread; cheap memcpy).
/// `extra_tensors` (e.g. "outer.anchor") are stored beside the trainer's own.
std::shared_ptr<safetensors_content>
snapshot_training_state(model_trainer& trainer, const training_progress& progress,
                        const std::map<std::string, std::string>& extra_metadata = {},
                        const std::map<std::string, torch::Tensor>& extra_tensors = {});

/// Loads a snapshot into the trainer; throws checkpoint_error when it does not fit.
training_progress restore_training_state(const safetensors_content& content,
                                         model_trainer& trainer);

/// Whether the checkpoint holds EMA weights (older checkpoints always do).
bool has_ema_tensors(const safetensors_content& content);

/// Loads the EMA weights (or the raw weights) of a checkpoint into a model for sampling; a
/// checkpoint without an EMA gives its raw weights either way.
void load_weights(const safetensors_content& content, torch::nn::Module& model,
                  bool use_ema = true);
inline void load_weights(const safetensors_content& content, dit& model, bool use_ema = true) {
  load_weights(content, *model, use_ema);
}

/// The dit_options a checkpoint was written with (from its metadata).
dit_options model_options_of(const safetensors_content& content);

/// Tensor <-> stored tensor conversions (contiguous CPU copies).
stored_tensor to_stored_tensor(const std::string& name, const torch::Tensor& tensor);
torch::Tensor from_stored_tensor(const stored_tensor& stored);

} // namespace ddactor
