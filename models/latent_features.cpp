// Clustering features from VAE latents; see latent_features.hpp.
#include "models/latent_features.hpp"

#include "models/feature_extractor.hpp"
#include "models/sd/encoded_batch.hpp"

namespace ddactor {

torch::Tensor latent_pca_features(const sd_example_set& examples, sd_pipeline& pipeline,
                                  int64_t dims, const progress_callback& progress) {
  torch::NoGradGuard no_grad;
  constexpr int64_t side = pixel_pca_features::pooled_side;
  const int64_t n = examples.count();
  const int64_t values = pipeline.latent_channels() * side * side;
  auto pooled = torch::empty({n, values}, torch::kFloat64);
  for (int64_t i = 0; i < n; ++i) {
    // One example at a time: examples of different buckets have latents of different sizes.
    const int64_t index[] = {i};
    const auto batch = make_sd_batch(examples, index);
    const auto latents = batch_latents(batch, pipeline);
    pooled[i].copy_(torch::adaptive_avg_pool2d(latents, {side, side}).reshape({values}));
    if (progress)
      progress(i + 1, n);
  }
  return standardised_principal_components(pooled, dims);
}

std::string latent_pca_description(int64_t dims) {
  return "builtin: VAE latents area-averaged to " +
         std::to_string(pixel_pca_features::pooled_side) + "x" +
         std::to_string(pixel_pca_features::pooled_side) +
         " per channel, standardised, PCA to " + std::to_string(dims) + " dims";
}

} // namespace ddactor
