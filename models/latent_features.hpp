#pragma once
// `ddactor cluster`'s features for a latent DiT (model.latent): the built-in recipe of
// feature_extractor.hpp (area-average to 8x8 per channel, standardise, PCA) applied to each
// example's VAE latents instead of its pixels. A latent is the image at 1/8 of its side in the
// VAE's channels, so the features keep layout and colour as the pixel features do, and they cost
// nothing more when the latent cache already holds the latents training will read.

#include <torch/torch.h>

#include <string>

#include "models/sd/sd_pipeline.hpp"
#include "runtime/progress_meter.hpp"
#include "runtime/sd_examples.hpp"

namespace ddactor {

/// (n x min(dims, C x 64)) float32 features of every example, in order: its cached latents, or
/// its pixels encoded by `pipeline`'s VAE where nothing is cached. `progress` hears (examples
/// done, n) and may throw work_stopped. Throws std::runtime_error naming a damaged cache file.
torch::Tensor latent_pca_features(const sd_example_set& examples, sd_pipeline& pipeline,
                                  int64_t dims, const progress_callback& progress = {});

/// What produced them, for the assignment file's metadata.
std::string latent_pca_description(int64_t dims);

} // namespace ddactor
