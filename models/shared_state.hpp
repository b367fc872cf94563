#pragma once
// The training state a swarm shares, as served to peers that join late or fall behind: weights,
// EMA weights, optimizer moments, catch-up counts (top-k) and step, the global epoch and
// (DiLoCo) the outer optimizer --
// everything that is identical on every peer, and nothing that is not (random stream, data
// position), so that any peer at the same epoch serves the same bytes and a download can resume
// from another peer.
//
// On the wire it is a safetensors file, optionally with halved floats (fp16/bf16: the joiner
// starts from a rounded copy) and/or zstd over the whole file. Decoding treats the bytes as
// hostile: names, shapes and dtypes must fit the model and every value must be finite before
// anything is changed.

#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "models/model_trainer.hpp"
#include "models/outer_optimizer.hpp"

namespace ddactor {

/// "none", "zstd", "fp16" or "bf16".
std::vector<char> encode_shared_state(model_trainer& trainer, int64_t epoch,
                                      const outer_nesterov* outer,
                                      const std::string& compression);

/// Applies downloaded state to the trainer (and outer optimizer); returns its epoch. Throws
/// std::runtime_error (naming what is wrong) and leaves everything unchanged on bad input.
int64_t restore_shared_state(const std::vector<char>& bytes, model_trainer& trainer,
                             outer_nesterov* outer);

/// The same state as plain copies of its tensors in host memory, to go back to later in this
/// process (a round proven poisoned): one copy, no encoding, nothing to check on the way back.
struct shared_state_copy {
  std::vector<torch::Tensor> tensors;  // in the order of the state's tensors
  int64_t step = 0;
  int64_t optimizer_steps = 0;
  std::size_t bytes() const;
};

shared_state_copy copy_shared_state(model_trainer& trainer, const outer_nesterov* outer);
/// Puts `copy` back, taken from the same trainer (and outer optimizer).
void restore_shared_state(const shared_state_copy& copy, model_trainer& trainer,
                          outer_nesterov* outer);

} // namespace ddactor
