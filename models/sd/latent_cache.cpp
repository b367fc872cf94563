// Encoding an image folder once into latent cache entries; see latent_cache.hpp.
#include "models/sd/latent_cache.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>
#include <set>

#include "models/device_transfer.hpp"
#include "runtime/image_folder_dataset.hpp"
#include "runtime/image_io.hpp"
#include "runtime/progress_meter.hpp"
#include "runtime/safetensors.hpp"
#include "runtime/tensor_blob.hpp"

namespace ddactor {

namespace fs = std::filesystem;

namespace {

// Raised when the entry layout or what goes into a key changes: every old entry becomes stale.
constexpr uint64_t entry_version = 1;
constexpr const char* entry_extension = ".safetensors";

std::string hex(uint64_t value) { return fmt::format("{:016x}", value); }

bool is_entry_name(const fs::path& file) {
  const auto stem = file.stem().string();
  return file.extension() == entry_extension && stem.size() == 16 &&
         stem.find_first_not_of("0123456789abcdef") == std::string::npos;
}

// One image of the folder on its way to an example.
struct pending_image {
  fs::path image;
  std::string caption;
  std::string key;
  std::optional<latent_cache_header> cached;
};

// The image decoded and fitted to its bucket, or the reason it cannot be used.
struct fitted_image {
  int bucket = 0;
  std::vector<uint8_t> pixels;  // RGB CHW
};

std::optional<fitted_image> fit_to_bucket(const fs::path& file,
                                          const std::vector<bucket_shape>& buckets,
                                          std::vector<image_folder_skip>& skips) {
  try {
    const auto bytes = read_file_bytes(file);
    const auto image = decode_image_bytes(bytes, file.string());
    fitted_image out;
    out.bucket = static_cast<int>(nearest_bucket(buckets, image.width, image.height));
    const auto& shape = buckets[static_cast<size_t>(out.bucket)];
    out.pixels = fit_image_to(image, shape.width, shape.height, 3);
    return out;
  } catch (const image_error& e) {
    skips.push_back({file, &skipped_files::unreadable, "cannot be used (" + e.reason() + ")"});
  }
  return std::nullopt;
}

torch::Tensor image_tensor(const fitted_image& fitted, const bucket_shape& shape) {
  auto bytes = torch::from_blob(const_cast<uint8_t*>(fitted.pixels.data()),
                                {1, 3, shape.height, shape.width}, torch::kUInt8);
  return bytes.to(torch::kFloat32) / 127.5 - 1.0;
}

int64_t remove_stale_entries(const fs::path& dir, const std::set<std::string>& used) {
  int64_t removed = 0;
  std::error_code error;
  for (const auto& item : fs::directory_iterator(dir, error)) {
    if (!item.is_regular_file(error) || !is_entry_name(item.path()))
      continue;
    if (used.count(item.path().stem().string()) == 0 && fs::remove(item.path(), error))
      ++removed;
  }
  remove_stale_temporaries(dir);
  return removed;
}

} // namespace

std::string latent_cache_key(std::span<const uint8_t> image_bytes, const std::string& caption,
                             uint64_t frozen_parts, int resolution, bool buckets) {
  uint64_t digest = blob_checksum(
    {reinterpret_cast<const char*>(image_bytes.data()), image_bytes.size()}, entry_version);
  digest = blob_checksum(caption, digest ^ 0x63617074696f6e31ULL);  // "caption1"
  const uint64_t settings[] = {frozen_parts, static_cast<uint64_t>(resolution),
                               buckets ? 1u : 0u, static_cast<uint64_t>(caption.size())};
  digest = blob_checksum({reinterpret_cast<const char*>(settings), sizeof settings}, digest);
  return hex(digest);
}

sd_example_set prepare_sd_examples(sd_pipeline& pipeline, const sd_data_options& options,
                                   sd_data_report& report) {
  sd_example_set out;
  out.buckets = options.buckets
                  ? aspect_buckets(options.resolution, options.pixel_step)
                  : std::vector<bucket_shape>{{options.resolution, options.resolution}};

  auto scan = scan_image_folder(options.image_folder, /*require_captions=*/true);
  std::vector<image_folder_skip> skips = std::move(scan.skipped);
  uint64_t frozen_parts = 0;
  if (options.cache) {
    fs::create_directories(options.cache_dir);
    spdlog::info("latent cache in {}: checking the VAE and text encoder files",
                 options.cache_dir.string());
    frozen_parts = frozen_parts_digest(pipeline.folder);
  }

  // Pass 1: captions and keys; which entries are there already.
  std::vector<pending_image> pending;
  for (const auto& entry : scan.images) {
    pending_image item{entry.image, {}, {}, std::nullopt};
    if (auto skip = read_caption_file(*entry.caption, item.caption)) {
      skips.push_back(std::move(*skip));
      continue;
    }
    if (options.cache) {
      try {
        const auto bytes = read_file_bytes(entry.image);
        item.key = latent_cache_key(bytes, item.caption, frozen_parts, options.resolution,
                                    options.buckets);
      } catch (const image_error& e) {
        skips.push_back({entry.image, &skipped_files::unreadable,
                         "cannot be read (" + e.reason() + ")"});
        continue;
      }
      item.cached = peek_latent_cache_entry(options.cache_dir / (item.key + entry_extension));
    }
    pending.push_back(std::move(item));
  }
  int64_t to_encode = 0;
  for (const auto& item : pending)
    to_encode += item.cached ? 0 : 1;
  if (options.cache)
    spdlog::info("latent cache: {} of {} images cached, {} to encode", pending.size() - to_encode,
                 pending.size(), to_encode);

  // Pass 2: encode what is missing (or keep the pixels without a cache).
  progress_meter progress(options.cache ? "encoding latents" : "loading images",
                          options.cache ? to_encode : static_cast<int64_t>(pending.size()),
                          "images");
  std::set<std::string> used_keys;
  for (auto& item : pending) {
    sd_example example;
    example.caption = item.caption;
    if (options.cache && item.cached) {
      const bucket_shape shape{item.cached->width, item.cached->height};
      const auto found = std::find(out.buckets.begin(), out.buckets.end(), shape);
      if (found != out.buckets.end()) {
        example.bucket = static_cast<int>(found - out.buckets.begin());
        example.cache_file = options.cache_dir / (item.key + entry_extension);
        used_keys.insert(item.key);
        ++report.cache_hits;
        out.examples.push_back(std::move(example));
        continue;
      }
      item.cached.reset();  // an entry of a size no bucket has: made again
    }
    auto fitted = fit_to_bucket(item.image, out.buckets, skips);
    if (!fitted) {
      progress.advance();
      continue;
    }
    example.bucket = fitted->bucket;
    if (!options.cache) {
      example.pixels = std::move(fitted->pixels);
      out.examples.push_back(std::move(example));
      progress.advance();
      continue;
    }
    const auto& shape = out.buckets[static_cast<size_t>(fitted->bucket)];
    latent_cache_entry entry;
    entry.key = item.key;
    entry.width = shape.width;
    entry.height = shape.height;
    const auto latents = pipeline.encode_images(image_tensor(*fitted, shape))[0];
    const auto embeddings = pipeline.encode_prompts({item.caption})[0];
    entry.latent_shape = latents.sizes().vec();
    entry.latents = host_floats(latents);
    entry.embedding_shape = embeddings.sizes().vec();
    entry.embeddings = host_floats(embeddings);
    example.cache_file = options.cache_dir / (item.key + entry_extension);
    write_latent_cache_entry(example.cache_file, entry);
    used_keys.insert(item.key);
    ++report.cache_misses;
    out.examples.push_back(std::move(example));
    progress.advance();
  }
  if (progress.done() > 0)
    progress.finish();
  if (options.cache)
    report.stale_removed = remove_stale_entries(options.cache_dir, used_keys);

  report.skipped.add(count_and_log_skips(std::move(skips)));
  if (out.examples.empty())
    throw std::runtime_error("image folder " + options.image_folder.string() +
                             " has no usable captioned image (" +
                             std::to_string(report.skipped.total()) + " files skipped)");
  std::vector<int64_t> per_bucket(out.buckets.size(), 0);
  for (const auto& example : out.examples)
    ++per_bucket[static_cast<size_t>(example.bucket)];
  std::string sizes;
  for (size_t b = 0; b < out.buckets.size(); ++b)
    if (per_bucket[b] > 0)
      sizes += fmt::format(" {}x{}:{}", out.buckets[b].width, out.buckets[b].height,
                           per_bucket[b]);
  spdlog::info("data: {} captioned images from {} (buckets{}){}", out.examples.size(),
               options.image_folder.string(), sizes,
               options.cache ? fmt::format("; latent cache: {} hits, {} encoded, {} stale removed",
                                           report.cache_hits, report.cache_misses,
                                           report.stale_removed)
                             : std::string());
  return out;
}

} // namespace ddactor
