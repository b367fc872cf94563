// Training memory of a DiT from its configuration; see memory_estimate.hpp.
#include "config/memory_estimate.hpp"

#include <unistd.h>

#include <cstdio>

namespace ddactor {

namespace {

// Bytes per trainable value: weights, gradient, AdamW's two moments, EMA weights, and the flat
// copies the swarm averages (parameters and mean gradient), all float32.
constexpr double state_bytes_per_parameter = 7 * 4;
// Floats a transformer block keeps per token and width for backward (inputs of the norms, the
// projections, the MLP's hidden layer): a conservative count.
constexpr double activations_per_token_and_width = 12;
// Attention keeps its score and probability matrices per head.
constexpr double attention_matrices = 2;

} // namespace

memory_estimate estimate_training_memory(const run_config& config) {
  const auto& m = config.model;
  const double h = m.hidden_size;
  const double mlp = m.mlp_ratio * h;
  // A latent DiT (model.latent) sees SD's VAE latents: 4 channels, 1/8 of the pixel side.
  const double channels = m.latent ? 4 : config.data.channels;
  const double input_side =
    m.latent ? config.data.resolution / 8.0 : static_cast<double>(config.data.resolution);
  const double patch_values = static_cast<double>(m.patch_size) * m.patch_size * channels;
  const double per_block = h * 6 * h + 6 * h        // adaLN modulation
                           + h * 3 * h + 3 * h      // qkv
                           + h * h + h              // attention output
                           + h * mlp + mlp + mlp * h + h;  // MLP
  double parameters = m.depth * per_block +
                      patch_values * h + h +                // patch embedding
                      256 * h + h + h * h + h +             // timestep embedder
                      (m.num_classes + 1) * h +             // label embedding
                      h * 2 * h + 2 * h + h * patch_values + patch_values;  // final layer
  if (m.conditioning == "caption")
    parameters += m.text_layers * 12 * h * h + 256 * h;
  memory_estimate out;
  out.parameters = parameters;
  out.state_bytes = parameters * state_bytes_per_parameter;
  const double side = input_side / m.patch_size;
  const double tokens = side * side;
  const double batch = config.data.batch_size;
  const double per_block_activations =
    batch * tokens * (activations_per_token_and_width * h + mlp) +
    batch * m.num_heads * tokens * tokens * attention_matrices;
  const double images = batch * channels * input_side * input_side * 3;  // input, noise, target
  out.activation_bytes = (m.depth * per_block_activations + images) * 4;
  return out;
}

double physical_memory_bytes() {
  const long pages = ::sysconf(_SC_PHYS_PAGES);
  const long page_size = ::sysconf(_SC_PAGE_SIZE);
  if (pages <= 0 || page_size <= 0)
    return 0;
  return static_cast<double>(pages) * static_cast<double>(page_size);
}

std::string format_bytes(double bytes) {
  char text[64];
  constexpr double tib = 1024.0 * 1024 * 1024 * 1024;
  if (bytes >= 1024 * tib)
    std::snprintf(text, sizeof text, "%.0f TiB", bytes / tib);
  else if (bytes >= tib)
    std::snprintf(text, sizeof text, "%.3g TiB", bytes / tib);
  else if (bytes >= 1024.0 * 1024 * 1024)
    std::snprintf(text, sizeof text, "%.3g GiB", bytes / (1024.0 * 1024 * 1024));
  else
    std::snprintf(text, sizeof text, "%.3g MiB", bytes / (1024.0 * 1024));
  return text;
}

} // namespace ddactor
