#pragma once
// Activation checkpointing for LibTorch 1.13, whose C++ API has no torch::utils::checkpoint: a
// segment of a network (a ResNet block, a transformer block, one chunk of attention queries) runs
// without building an autograd graph in the forward pass, keeping only its inputs; the backward
// pass runs it again with gradients on and differentiates that. Memory falls from every
// intermediate of the segment to its inputs, for about one more forward pass of compute.
//
// The segment's weights are passed in as well, so that their gradients flow back through the
// ordinary autograd graph: torch::autograd::grad() and gradient hooks see them, as they would
// without checkpointing. The random-number state of the inputs' device is saved in the forward
// pass and restored for the recomputation, so dropout draws the same mask both times.
//
// Not supported: double backward (create_graph) through a checkpointed segment.

#include <torch/torch.h>

#include <functional>
#include <vector>

namespace ddactor {

/// A segment's output from its inputs. It may read its module's weights (passed to
/// run_checkpointed as `weights`) but no other tensor that needs a gradient. Undefined inputs
/// (such as an absent time embedding) reach it undefined.
using checkpoint_segment = std::function<torch::Tensor(const std::vector<torch::Tensor>& inputs)>;

/// segment(inputs), recomputed in backward when any input or weight needs a gradient and grad mode
/// is on; a plain call otherwise.
torch::Tensor run_checkpointed(const checkpoint_segment& segment,
                               const std::vector<torch::Tensor>& inputs,
                               const std::vector<torch::Tensor>& weights);

} // namespace ddactor
