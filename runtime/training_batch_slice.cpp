// A slice of a training batch; see training_batch_slice.hpp.
#include "runtime/training_batch_slice.hpp"

#include <stdexcept>
#include <string>
#include <vector>

namespace ddactor {

namespace {

// Rows [offset, offset + count) of a buffer of `per` elements per example; empty stays empty.
template <typename T>
std::vector<T> rows_of(const std::vector<T>& all, int64_t per, int64_t offset, int64_t count) {
  if (all.empty())
    return {};
  const auto begin = all.begin() + offset * per;
  return std::vector<T>(begin, begin + count * per);
}

} // namespace

training_batch slice_of_batch(const training_batch& batch, int64_t offset, int64_t count) {
  if (offset < 0 || count < 0 || offset + count > batch.count)
    throw std::invalid_argument("slice [" + std::to_string(offset) + ", " +
                                std::to_string(offset + count) + ") is outside a batch of " +
                                std::to_string(batch.count));
  if (!batch.consistent())
    throw std::invalid_argument("batch buffers do not match its shapes");
  const auto labelled = [&](size_t size) {
    return size == 0 || size == static_cast<size_t>(batch.count);
  };
  if (!labelled(batch.labels.size()) || !labelled(batch.captions.size()) ||
      !labelled(batch.clusters.size()))
    throw std::invalid_argument("batch labels, captions or clusters do not match its count");
  training_batch out;
  out.count = count;
  out.channels = batch.channels;
  out.height = batch.height;
  out.width = batch.width;
  out.images = rows_of(batch.images, int64_t{batch.channels} * batch.height * batch.width,
                       offset, count);
  out.labels = rows_of(batch.labels, 1, offset, count);
  out.captions = rows_of(batch.captions, 1, offset, count);
  out.clusters = rows_of(batch.clusters, 1, offset, count);
  out.latent_channels = batch.latent_channels;
  out.latent_height = batch.latent_height;
  out.latent_width = batch.latent_width;
  out.latents = rows_of(batch.latents,
                        int64_t{batch.latent_channels} * batch.latent_height * batch.latent_width,
                        offset, count);
  out.embedding_length = batch.embedding_length;
  out.embedding_width = batch.embedding_width;
  out.embeddings = rows_of(batch.embeddings, int64_t{batch.embedding_length} * batch.embedding_width,
                           offset, count);
  out.epoch_after = batch.epoch_after;
  out.position_after = batch.position_after;
  out.loader_generation = batch.loader_generation;
  out.node_offset = batch.node_offset + offset;
  out.node_count = batch.node_count > 0 ? batch.node_count : batch.count;
  return out;
}

} // namespace ddactor
