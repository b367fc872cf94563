// Latent cache entries and batches of latent-diffusion examples; see sd_examples.hpp.
#include "runtime/sd_examples.hpp"

#include <cstring>
#include <map>
#include <optional>
#include <stdexcept>

#include "runtime/safetensors.hpp"

namespace ddactor {

namespace {

constexpr const char* entry_format = "ddactor-latent-cache-1";

stored_tensor float_tensor(const std::string& name, const std::vector<int64_t>& shape,
                           const std::vector<float>& values) {
  stored_tensor out{name, tensor_dtype::f32, shape, {}};
  out.data.resize(values.size() * sizeof(float));
  std::memcpy(out.data.data(), values.data(), out.data.size());
  return out;
}

std::vector<float> floats_of(const std::filesystem::path& file, const stored_tensor* stored,
                             size_t rank) {
  if (stored == nullptr || stored->dtype != tensor_dtype::f32 || stored->shape.size() != rank)
    throw std::runtime_error(file.string() + ": not a latent cache entry (tensors missing or of "
                                             "the wrong type)");
  std::vector<float> values(stored->data.size() / sizeof(float));
  std::memcpy(values.data(), stored->data.data(), values.size() * sizeof(float));
  return values;
}

int positive_int(const std::map<std::string, std::string>& metadata, const std::string& key) {
  const auto it = metadata.find(key);
  if (it == metadata.end())
    throw std::invalid_argument("no " + key);
  const int value = std::stoi(it->second);
  if (value <= 0)
    throw std::invalid_argument(key + " is not positive");
  return value;
}

} // namespace

void write_latent_cache_entry(const std::filesystem::path& file, const latent_cache_entry& entry) {
  safetensors_content content;
  content.metadata["format"] = entry_format;
  content.metadata["key"] = entry.key;
  content.metadata["width"] = std::to_string(entry.width);
  content.metadata["height"] = std::to_string(entry.height);
  content.tensors.push_back(float_tensor("latents", entry.latent_shape, entry.latents));
  content.tensors.push_back(float_tensor("embeddings", entry.embedding_shape, entry.embeddings));
  write_safetensors_file(file, content);
}

latent_cache_entry read_latent_cache_entry(const std::filesystem::path& file) {
  safetensors_content content;
  try {
    content = read_safetensors_file(file);
  } catch (const safetensors_error& e) {
    throw std::runtime_error(e.what());
  }
  const auto format = content.metadata.find("format");
  if (format == content.metadata.end() || format->second != entry_format)
    throw std::runtime_error(file.string() + ": not a latent cache entry (metadata format)");
  latent_cache_entry entry;
  entry.key = content.metadata["key"];
  try {
    entry.width = positive_int(content.metadata, "width");
    entry.height = positive_int(content.metadata, "height");
  } catch (const std::exception& e) {
    throw std::runtime_error(file.string() + ": latent cache entry metadata: " + e.what());
  }
  const auto* latents = content.find("latents");
  const auto* embeddings = content.find("embeddings");
  entry.latents = floats_of(file, latents, 3);
  entry.embeddings = floats_of(file, embeddings, 2);
  entry.latent_shape = latents->shape;
  entry.embedding_shape = embeddings->shape;
  return entry;
}

std::optional<latent_cache_header> peek_latent_cache_entry(const std::filesystem::path& file) {
  std::error_code error;
  if (!std::filesystem::is_regular_file(file, error))
    return std::nullopt;
  try {
    const safetensors_reader reader(file);
    const auto& metadata = reader.metadata();
    const auto format = metadata.find("format");
    const auto key = metadata.find("key");
    if (format == metadata.end() || format->second != entry_format || key == metadata.end() ||
        reader.find("latents") == nullptr || reader.find("embeddings") == nullptr)
      return std::nullopt;
    return latent_cache_header{key->second, positive_int(metadata, "width"),
                               positive_int(metadata, "height")};
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

std::vector<int> sd_example_set::bucket_of() const {
  std::vector<int> out;
  out.reserve(examples.size());
  for (const auto& example : examples)
    out.push_back(example.bucket);
  return out;
}

std::vector<std::string> sd_example_set::captions() const {
  std::vector<std::string> out;
  out.reserve(examples.size());
  for (const auto& example : examples)
    out.push_back(example.caption);
  return out;
}

training_batch make_sd_batch(const sd_example_set& data, std::span<const int64_t> indices) {
  if (indices.empty())
    throw std::invalid_argument("make_sd_batch: an empty batch");
  auto example_at = [&](int64_t i) -> const sd_example& {
    if (i < 0 || i >= data.count())
      throw std::out_of_range("make_sd_batch: index " + std::to_string(i) + " out of range");
    return data.examples[static_cast<size_t>(i)];
  };
  const int bucket = example_at(indices.front()).bucket;
  if (bucket < 0 || static_cast<size_t>(bucket) >= data.buckets.size())
    throw std::out_of_range("make_sd_batch: bucket out of range");
  const auto shape = data.buckets[static_cast<size_t>(bucket)];
  training_batch batch;
  batch.count = static_cast<int64_t>(indices.size());
  batch.channels = 3;
  batch.width = shape.width;
  batch.height = shape.height;
  // The whole batch is checked before any entry is read.
  for (const auto i : indices) {
    const auto& example = example_at(i);
    if (example.bucket != bucket)
      throw std::invalid_argument("make_sd_batch: examples of different buckets in one batch");
    if (example.cache_file.empty() != example_at(indices.front()).cache_file.empty())
      throw std::invalid_argument("make_sd_batch: cached and uncached examples in one batch");
  }
  for (const auto i : indices) {
    const auto& example = example_at(i);
    batch.captions.push_back(example.caption);
    if (example.cache_file.empty()) {
      const size_t size = size_t{3} * shape.width * shape.height;
      if (example.pixels.size() != size)
        throw std::invalid_argument("make_sd_batch: an example's pixels do not fit its bucket");
      for (const auto p : example.pixels)
        batch.images.push_back(static_cast<float>(p) / 127.5f - 1.0f);
      continue;
    }
    auto entry = read_latent_cache_entry(example.cache_file);
    if (entry.width != shape.width || entry.height != shape.height)
      throw std::runtime_error(example.cache_file.string() +
                               ": the entry's size does not match its bucket");
    if (batch.latents.empty()) {
      batch.latent_channels = static_cast<int>(entry.latent_shape[0]);
      batch.latent_height = static_cast<int>(entry.latent_shape[1]);
      batch.latent_width = static_cast<int>(entry.latent_shape[2]);
      batch.embedding_length = static_cast<int>(entry.embedding_shape[0]);
      batch.embedding_width = static_cast<int>(entry.embedding_shape[1]);
    } else if (entry.latent_shape != std::vector<int64_t>{batch.latent_channels,
                                                          batch.latent_height,
                                                          batch.latent_width} ||
               entry.embedding_shape !=
                 std::vector<int64_t>{batch.embedding_length, batch.embedding_width}) {
      throw std::runtime_error(example.cache_file.string() +
                               ": the entry's tensors do not match the others of its batch");
    }
    batch.latents.insert(batch.latents.end(), entry.latents.begin(), entry.latents.end());
    batch.embeddings.insert(batch.embeddings.end(), entry.embeddings.begin(),
                            entry.embeddings.end());
  }
  // A cached batch carries no pixels; the captions stay for grids and logs.
  return batch;
}

} // namespace ddactor
