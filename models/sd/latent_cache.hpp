#pragma once
// The training examples of a latent diffusion model made from an image folder with captions
// (cat.png + cat.txt): each image is given its bucket (aspect_buckets.hpp; one square bucket
// without data.buckets), and -- with caching on -- is encoded once by the frozen VAE, its caption
// once by the frozen text encoder, and the result kept on disk as a latent cache entry
// (runtime/sd_examples.hpp) in the run folder. Training then reads latents and embeddings and
// never runs the encoders again.
//
// An entry is found by its key, a digest of everything it is computed from:
//
//   the image file's bytes, the caption's text, the frozen parts' digest (VAE and text encoder
//   configs and weights, tokenizer files: sd_pipeline.hpp's frozen_parts_digest), the
//   resolution, whether buckets are on, and the entry format's version
//
// and is stored as <cache dir>/<key>.safetensors. Changing any of them changes the key: the old
// entry is not found (a miss, encoded again) and is removed as stale at the end. A damaged entry
// (a truncated file, another file under the name) counts as a miss too.
//
// Encoding shows its progress with an ETA every few seconds. Unreadable images and captions are
// skipped and logged as the image folder loader does; a folder with no usable image is an error.
//
// Without caching the examples keep their pixels (fitted to their bucket) and captions in
// memory, and the trainer encodes every batch.

#include <filesystem>
#include <span>
#include <string>

#include "models/sd/sd_pipeline.hpp"
#include "runtime/image_dataset.hpp"
#include "runtime/sd_examples.hpp"

namespace ddactor {

struct sd_data_options {
  std::filesystem::path image_folder;
  /// Where entries are kept (created); used when `cache` is on.
  std::filesystem::path cache_dir;
  /// Pixels per side of the square bucket; the budget of every bucket is resolution^2.
  int resolution = 512;
  bool buckets = false;
  bool cache = true;
  /// Bucket sides are multiples of this (64 for SD: 8 latent pixels).
  int pixel_step = 64;
};

struct sd_data_report {
  int64_t cache_hits = 0;
  int64_t cache_misses = 0;  // entries encoded now
  int64_t stale_removed = 0;
  skipped_files skipped;
};

/// The key of one image's entry (hex, 16 digits).
std::string latent_cache_key(std::span<const uint8_t> image_bytes, const std::string& caption,
                             uint64_t frozen_parts, int resolution, bool buckets);

/// Builds the examples of `options.image_folder` with `pipeline`'s VAE and text encoder (the
/// UNet is not used). Throws std::runtime_error naming the folder when it holds no usable image.
sd_example_set prepare_sd_examples(sd_pipeline& pipeline, const sd_data_options& options,
                                   sd_data_report& report);

} // namespace ddactor
