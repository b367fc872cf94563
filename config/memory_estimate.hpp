#pragma once
// What training a run's DiT would take in memory, from its configuration alone, so that a run
// too large for the machine is refused when its file is read ("needs about 310 GiB, this machine
// has 24 GiB: lower data.batch_size ...") rather than after minutes of starting up with a bare
// std::bad_alloc. An estimate, not a bound: it counts what dominates (weights with their
// gradient, AdamW moments, EMA and flat buffers; activations kept for backward, attention
// matrices included) and errs on the small side, so that it refuses only what cannot fit.

#include <cstdint>
#include <string>

#include "config/run_config.hpp"

namespace ddactor {

struct memory_estimate {
  double parameters = 0;       // trainable values of the DiT (and its caption encoder)
  double state_bytes = 0;      // weights, gradients, optimizer, EMA, flat buffers
  double activation_bytes = 0; // kept for backward in one step of data.batch_size
  double total_bytes() const { return state_bytes + activation_bytes; }
};

/// The estimate for training the configured DiT, on pixels or on latents (model.latent). The
/// router of a DDM is far smaller and a Stable Diffusion UNet's size comes from its folder: not
/// estimated.
memory_estimate estimate_training_memory(const run_config& config);

/// Physical memory of this machine in bytes (0 when unknown).
double physical_memory_bytes();

/// "1.5 GiB", "310 GiB", "12 MiB".
std::string format_bytes(double bytes);

} // namespace ddactor
