#pragma once
// Moving training data between the host and the training device (run.device). The network,
// checkpoints, digests and the node's Gloo collective work on host memory; the model, its
// optimizer state and EMA live on the device. On the CPU every function here returns its input
// or a plain copy, so a CPU run takes the very code path a GPU run takes.
//
// Host-to-device copies of batches go through pinned (page-locked) memory and do not block the
// host: the copy is queued on the device's current stream, ahead of the kernels that read it,
// while the host goes on preparing the next batch (the data loader keeps data.prefetch batches
// ready). Device-to-host copies of the flat buffers (a round's gradient, the weights for a
// digest or a checkpoint) block: their values are needed at once.

#include <torch/torch.h>

#include <span>
#include <string>
#include <vector>

namespace ddactor {

/// run.device as LibTorch's device ("cpu", "cuda", "cuda:N"); throws std::invalid_argument
/// naming run.device for anything else.
torch::Device parse_training_device(const std::string& name);

/// `tensor` on the host, contiguous: itself when it already is, else a copy.
torch::Tensor on_host(const torch::Tensor& tensor);

/// A host copy of a float tensor's values, in order.
std::vector<float> host_floats(const torch::Tensor& tensor);

/// `values` (host memory) as a float tensor on `device`: a copy, never a view of `values`.
torch::Tensor device_floats(std::span<const float> values, const torch::Device& device);

/// A host tensor (a batch's images, labels, latents) on `device`: the tensor itself on the CPU,
/// else copied from pinned memory without blocking the host. The source may be a view of memory
/// the caller frees after this call returns: it is copied before.
torch::Tensor to_training_device(const torch::Tensor& host, const torch::Device& device);

} // namespace ddactor
