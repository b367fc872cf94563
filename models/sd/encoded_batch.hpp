#pragma once
// A latent diffusion model's view of a training batch: its latents and text embeddings, read
// from the batch when the latent cache supplied them, else computed now from its pixels and
// captions with the pipeline's frozen VAE and text encoder. Shared by the Stable Diffusion
// trainer and the latent DiT's.

#include <torch/torch.h>

#include "models/sd/sd_pipeline.hpp"
#include "runtime/training_batch.hpp"

namespace ddactor {

/// (N, C, h, w) scaled latents. Cached ones are a view of the batch's buffer (no copy: the batch
/// must outlive the tensor). Throws std::invalid_argument when cached latents do not have the
/// VAE's channel count, or pixels are not RGB.
torch::Tensor batch_latents(const training_batch& batch, sd_pipeline& pipeline);

/// (N, L, W) text-encoder states of the captions. Cached ones are a view of the batch's buffer.
/// `reference` is any embedding of this text encoder (e.g. the empty prompt's, (1, L, W)): cached
/// states of another shape throw std::invalid_argument, as do missing captions.
torch::Tensor batch_embeddings(const training_batch& batch, sd_pipeline& pipeline,
                               const torch::Tensor& reference);

} // namespace ddactor
