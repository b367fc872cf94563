#pragma once
// Trading compute for memory in the SD UNet and VAE, without changing results: activation
// checkpointing of every ResNet and transformer block (their activations recomputed in backward)
// and attention computed a chunk of queries at a time. Both are settings of the modules, switched
// on a whole model at once.

#include <torch/torch.h>

#include <cstdint>

namespace ddactor {

struct memory_saving_options {
  /// Recompute each resnet_block_2d and basic_transformer_block in backward instead of keeping
  /// its activations (for training; no effect without gradients).
  bool checkpoint_activations = false;
  /// Attention queries per chunk; 0: all at once. Bounds the score matrix of one attention to
  /// heads x chunk x keys, in the forward and (by recomputing each chunk) the backward pass.
  int64_t attention_query_chunk_size = 0;
};

/// Sets the options on every block of `model` (any module tree holding the SD blocks).
void apply_memory_saving(torch::nn::Module& model, const memory_saving_options& options);

} // namespace ddactor
