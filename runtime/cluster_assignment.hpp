#pragma once
// The DDM assignment file: which of the K clusters (experts) each training image belongs to,
// written once by `ddactor cluster` and shared by every peer of every expert. A safetensors file,
// so that Python reads it as it is:
//
//   assignment        int32 [n]     cluster of training image i, in [0, K)
//   sizes             int64 [K]     images per cluster
//   coarse_centroids  f32   [K, d]  the mean feature of each cluster (d = 0 for a random split)
//   fine_centroids    f32   [F, d]  the fine k-means clusters that were merged into the K
//   fine_to_coarse    int32 [F]     the coarse cluster of each fine one
//
// and metadata (strings) saying what was clustered and how: the data source, path, resolution,
// channels, image count and a fingerprint of the pixels; K, F, d, the seed, the partition kind and
// the feature extractor. A peer checks the data it loaded against these before it trains on a
// cluster, so that an assignment made for other data is refused instead of silently mixing
// images. The data path is kept for the reader's information only: peers may keep the same data
// in different folders.
//
// Files are hostile input: reading checks dtypes, shapes, ranges and that sizes agree with the
// assignment, and throws cluster_assignment_error naming the file. Pure code, no LibTorch.

#include <cstdint>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

#include "config/run_config.hpp"
#include "runtime/image_dataset.hpp"
#include "runtime/sd_examples.hpp"

namespace ddactor {

class cluster_assignment_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// What a clustering was computed on.
struct clustered_data {
  std::string source;       // data.source
  std::string path;         // data.path (informational)
  int resolution = 0;       // images are resolution x resolution
  int channels = 0;
  int64_t count = 0;        // training images
  std::string fingerprint;  // 16 hex digits; see data_fingerprint

  bool operator==(const clustered_data&) const = default;
};

struct cluster_assignment {
  int64_t num_clusters = 0;              // K
  std::vector<int32_t> assignment;       // n
  std::vector<int64_t> sizes;            // K
  int64_t feature_dims = 0;              // d; 0 when no features were computed (random split)
  std::vector<float> coarse_centroids;   // K x d
  int64_t fine_clusters = 0;             // F; 0 for a random split
  std::vector<float> fine_centroids;     // F x d
  std::vector<int32_t> fine_to_coarse;   // F
  clustered_data data;
  uint64_t seed = 0;
  std::string partition;                 // "kmeans" or "random"
  std::string features;                  // the feature extractor, as it describes itself

  // Throws cluster_assignment_error (prefixed with `where`) unless every size and range agrees.
  void check_consistent(const std::string& where) const;

  bool operator==(const cluster_assignment&) const = default;
};

// A 64-bit hash of the images' shape and pixels (splitmix64's mixer over 8-byte little-endian
// words), as 16 hex digits: the same on every machine for the same images in the same order.
// Labels and captions are left out: they do not change the partition.
std::string data_fingerprint(const image_dataset& images);
// The same for a latent model's examples (model.latent): their buckets, captions and latent
// cache keys (digests of the image files and the encoders), or pixels where nothing is cached.
// The same folder read with and without data.cache_latents has two fingerprints.
std::string data_fingerprint(const sd_example_set& examples);

// The identity of a run's training set: the config's data keys and the loaded images.
clustered_data describe_training_data(const run_config& config, const image_dataset& train);
clustered_data describe_training_data(const run_config& config, const sd_example_set& train);

// Atomic write (see write_safetensors_file). Throws cluster_assignment_error for an inconsistent
// assignment, naming the path.
void write_cluster_assignment(const std::filesystem::path& path, const cluster_assignment& clusters);

// Reads and validates a file. Throws cluster_assignment_error naming the path, with the reason
// (missing file, not safetensors, a missing or ill-shaped tensor, a label out of range, ...).
cluster_assignment read_cluster_assignment(const std::filesystem::path& path);

// Throws cluster_assignment_error unless `clusters` (read from `file`) was computed for `loaded`:
// same source, resolution, channels, image count and fingerprint. The message lists every
// difference and says how to fix it.
void check_assignment_matches(const cluster_assignment& clusters, const clustered_data& loaded,
                              const std::filesystem::path& file);

// The training-set indices of cluster k, increasing. Throws cluster_assignment_error unless
// 0 <= k < num_clusters.
std::vector<int64_t> indices_of_cluster(const cluster_assignment& clusters, int k);

// The random partition of the DDM ablation: a seeded permutation of 0..n-1 cut into k runs of
// equal length (the first n mod k clusters one longer), so sizes differ by at most one. Throws
// cluster_assignment_error unless 1 <= k <= n.
std::vector<int32_t> random_partition(int64_t n, int64_t k, uint64_t seed);

}  // namespace ddactor
