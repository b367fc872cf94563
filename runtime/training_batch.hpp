#pragma once
// One batch of training examples in host memory, as the data loader hands it to the trainer.
//
// Torch-free so that data loading never includes LibTorch; the trainer wraps `images` (and
// `latents`, `embeddings`) with torch::from_blob. Travels only between actors of one process
// (registered as a local-only message type), never over the network.
//
// A batch holds pixels (`images`, channels x height x width each), or, for a latent diffusion
// model whose encoders ran ahead of training (models/sd/latent_cache.hpp), the encoded form:
// `latents` (latent_channels x latent_height x latent_width each) and `embeddings` (the text
// encoder's states, embedding_length x embedding_width each). height and width then still say
// the examples' size in pixels.

#include <cstdint>
#include <string>
#include <vector>

namespace ddactor {

struct training_batch {
  int64_t count = 0;
  int channels = 0;
  int height = 0;
  int width = 0;
  /// count * channels * height * width floats in [-1, 1], CHW per image.
  std::vector<float> images;
  /// Class labels (count entries) or empty.
  std::vector<int64_t> labels;
  /// Captions (count entries) or empty.
  std::vector<std::string> captions;
  /// DDM clusters (count entries) when training the router, or empty.
  std::vector<int64_t> clusters;
  /// Encoded examples (see above), or empty.
  int latent_channels = 0;
  int latent_height = 0;
  int latent_width = 0;
  std::vector<float> latents;
  int embedding_length = 0;
  int embedding_width = 0;
  std::vector<float> embeddings;
  /// Where the data order stands after this batch: resuming from (epoch, position) continues
  /// with the next batch.
  int64_t epoch_after = 0;
  int64_t position_after = 0;
  /// Which incarnation of the data loader made it; the trainer drops batches of a dead one.
  uint64_t loader_generation = 0;
  /// With several trainers in a node, this batch is the slice [node_offset, node_offset + count)
  /// of the node's batch of node_count examples (0: it is the whole of it). A loss draws its
  /// randomness for the node's whole batch and keeps its slice, so that an example's noise does
  /// not depend on how many trainers share the batch.
  int64_t node_offset = 0;
  int64_t node_count = 0;

  bool has_latents() const { return !latents.empty(); }

  /// Whether every buffer holds what the shapes say (an empty one is fine where unused).
  bool consistent() const {
    const auto per = [this](int64_t a, int64_t b, int64_t c) { return count * a * b * c; };
    const bool images_fit = images.empty() ||
                            static_cast<int64_t>(images.size()) == per(channels, height, width);
    const bool latents_fit =
      latents.empty() ||
      static_cast<int64_t>(latents.size()) == per(latent_channels, latent_height, latent_width);
    const bool embeddings_fit =
      embeddings.empty() ||
      static_cast<int64_t>(embeddings.size()) == per(embedding_length, embedding_width, 1);
    return count >= 0 && (!images.empty() || !latents.empty()) && images_fit && latents_fit &&
           embeddings_fit;
  }
};

} // namespace ddactor
