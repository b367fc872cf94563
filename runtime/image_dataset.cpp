// Indexing, subsets and the uint8 -> float batch conversion of image_dataset.
#include "runtime/image_dataset.hpp"

#include <cstring>

namespace ddactor {

namespace {

void check_index(const image_dataset& data, int64_t i) {
  if (i < 0 || i >= data.count)
    throw dataset_error("image index " + std::to_string(i) + " is out of range: the data set has " +
                        std::to_string(data.count) + " images");
}

// (x - 127.5) / 127.5 is x / 127.5 - 1 rounded once: the subtraction is exact for bytes, so
// every value is the float nearest the true one (x / 127.5f - 1 loses digits near 0), and 0 and
// 255 land exactly on -1 and 1. The compiler vectorizes the inner loop (uint8 -> float
// widening, packed subtract and divide); on an idle core it wrote 18 GB/s of floats, faster
// than a 256-entry lookup table (13-16 GB/s) and than the plain loop at -O2 (5 GB/s), whose
// cheap cost model vectorizes only loops of a known trip count, hence the fixed-size blocks.
void bytes_to_float(const uint8_t* __restrict in, float* __restrict out, int64_t n) {
  constexpr int64_t block = 64;  // a fixed trip count lets -O2's cheap cost model vectorize too
  int64_t k = 0;
  for (; k + block <= n; k += block)
    for (int64_t j = 0; j < block; ++j)
      out[k + j] = (static_cast<float>(in[k + j]) - 127.5f) / 127.5f;
  for (; k < n; ++k) out[k] = (static_cast<float>(in[k]) - 127.5f) / 127.5f;
}

} // namespace

std::span<const uint8_t> image_dataset::image(int64_t i) const {
  check_index(*this, i);
  const auto size = static_cast<size_t>(image_size());
  return {pixels.data() + static_cast<size_t>(i) * size, size};
}

image_dataset image_dataset::subset(std::span<const int64_t> indices) const {
  image_dataset out;
  out.count = static_cast<int64_t>(indices.size());
  out.channels = channels;
  out.height = height;
  out.width = width;
  out.class_names = class_names;
  const auto size = static_cast<size_t>(image_size());
  out.pixels.resize(indices.size() * size);
  if (!labels.empty()) out.labels.reserve(indices.size());
  if (!captions.empty()) out.captions.reserve(indices.size());
  if (!clusters.empty()) out.clusters.reserve(indices.size());
  for (size_t k = 0; k < indices.size(); ++k) {
    const int64_t i = indices[k];
    check_index(*this, i);
    std::memcpy(out.pixels.data() + k * size, pixels.data() + static_cast<size_t>(i) * size, size);
    if (!labels.empty()) out.labels.push_back(labels[static_cast<size_t>(i)]);
    if (!captions.empty()) out.captions.push_back(captions[static_cast<size_t>(i)]);
    if (!clusters.empty()) out.clusters.push_back(clusters[static_cast<size_t>(i)]);
  }
  return out;
}

void image_dataset::check_consistent() const {
  if (count < 0 || channels <= 0 || height < 0 || width < 0)
    throw dataset_error("image data set has a negative count or size, or no channels");
  const auto n = static_cast<size_t>(count);
  if (pixels.size() != n * static_cast<size_t>(image_size()))
    throw dataset_error("image data set holds " + std::to_string(pixels.size()) +
                        " pixel bytes, expected " + std::to_string(count) + " images of " +
                        std::to_string(channels) + "x" + std::to_string(height) + "x" +
                        std::to_string(width));
  if (!labels.empty() && labels.size() != n)
    throw dataset_error("image data set has " + std::to_string(labels.size()) + " labels for " +
                        std::to_string(count) + " images");
  if (!clusters.empty() && clusters.size() != n)
    throw dataset_error("image data set has " + std::to_string(clusters.size()) +
                        " cluster entries for " + std::to_string(count) + " images");
  if (!captions.empty() && captions.size() != n)
    throw dataset_error("image data set has " + std::to_string(captions.size()) +
                        " captions for " + std::to_string(count) + " images");
}

void skipped_files::add_example(std::string line) {
  if (examples.size() < max_examples) examples.push_back(std::move(line));
}

void images_to_float(const image_dataset& data, std::span<const int64_t> indices,
                     std::span<float> out) {
  const int64_t size = data.image_size();
  if (out.size() != indices.size() * static_cast<size_t>(size))
    throw dataset_error("images_to_float: output holds " + std::to_string(out.size()) +
                        " floats, " + std::to_string(indices.size()) + " images need " +
                        std::to_string(indices.size() * static_cast<size_t>(size)));
  for (size_t k = 0; k < indices.size(); ++k) {
    check_index(data, indices[k]);
    bytes_to_float(data.pixels.data() + static_cast<size_t>(indices[k]) * static_cast<size_t>(size),
                   out.data() + k * static_cast<size_t>(size), size);
  }
}

training_batch batch_of(const image_dataset& data, std::span<const int64_t> indices) {
  training_batch batch;
  batch.count = static_cast<int64_t>(indices.size());
  batch.channels = data.channels;
  batch.height = data.height;
  batch.width = data.width;
  batch.images.resize(indices.size() * static_cast<size_t>(data.image_size()));
  images_to_float(data, indices, batch.images);
  auto pick = [&](const auto& all, auto& out) {
    if (!all.empty())
      for (auto i : indices)
        out.push_back(all[static_cast<size_t>(i)]);
  };
  pick(data.labels, batch.labels);
  pick(data.captions, batch.captions);
  pick(data.clusters, batch.clusters);
  return batch;
}

} // namespace ddactor
