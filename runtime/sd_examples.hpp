#pragma once
// The training examples of a latent diffusion model (a Stable Diffusion UNet, a latent DiT) as the
// data loader batches them. Each example has a bucket (its size in pixels, aspect_buckets.hpp)
// and either
//
//   - its encoded form on disk: a latent cache entry holding the VAE's latents and the text
//     encoder's embeddings of its caption, written once by models/sd/latent_cache.hpp, or
//   - its pixels (RGB, CHW, at its bucket's size) and caption in memory, for a trainer that
//     encodes every batch itself (data.cache_latents = false).
//
// A latent cache entry is a safetensors file:
//
//   latents      f32 (C, h, w)    scaled latents (the VAE's mean times scaling_factor)
//   embeddings   f32 (L, W)       the text encoder's last hidden state for the caption
//   __metadata__ format "ddactor-latent-cache-1", width and height (pixels), key (hex)
//
// Torch-free: the data loader reads entries on its own thread.

#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "runtime/aspect_buckets.hpp"
#include "runtime/training_batch.hpp"

namespace ddactor {

struct latent_cache_entry {
  std::string key;
  int width = 0;   // pixels
  int height = 0;
  std::vector<int64_t> latent_shape;     // C, h, w
  std::vector<float> latents;
  std::vector<int64_t> embedding_shape;  // L, W
  std::vector<float> embeddings;
};

/// Writes an entry atomically. Throws safetensors_error naming the file.
void write_latent_cache_entry(const std::filesystem::path& file, const latent_cache_entry& entry);

/// Reads a whole entry. Throws std::runtime_error naming the file for one that is damaged or is
/// no entry.
latent_cache_entry read_latent_cache_entry(const std::filesystem::path& file);

/// An entry's key and size from its header alone (no tensor is read), or nothing when the file is
/// missing, damaged or no entry.
struct latent_cache_header {
  std::string key;
  int width = 0;
  int height = 0;
};
std::optional<latent_cache_header> peek_latent_cache_entry(const std::filesystem::path& file);

struct sd_example {
  int bucket = 0;
  std::string caption;
  std::filesystem::path cache_file;  // set when the example is cached
  std::vector<uint8_t> pixels;       // RGB CHW at the bucket's size, when it is not
};

struct sd_example_set {
  std::vector<bucket_shape> buckets;
  std::vector<sd_example> examples;

  int64_t count() const { return static_cast<int64_t>(examples.size()); }
  /// The bucket of each example, for bucketed_order.
  std::vector<int> bucket_of() const;
  std::vector<std::string> captions() const;
};

/// The batch of `indices`, which must share a bucket: the cached latents and embeddings, or the
/// pixels as floats in [-1, 1] with the captions. Throws std::runtime_error naming a cache file
/// that cannot be read or does not fit the others of the batch.
training_batch make_sd_batch(const sd_example_set& data, std::span<const int64_t> indices);

} // namespace ddactor
