// The DDM assignment file: writing, validating reading, data identity; see cluster_assignment.hpp.
#include "runtime/cluster_assignment.hpp"

#include <charconv>
#include <cmath>
#include <cstring>
#include <limits>

#include "runtime/data_order.hpp"
#include "runtime/safetensors.hpp"

namespace ddactor {

namespace {

// The metadata "format" value: a safetensors file that is something else is refused by name.
constexpr const char* format_tag = "ddactor-clusters";
constexpr const char* format_version = "1";
// The random partition's stream of its seed.
constexpr uint64_t random_partition_stream = 0x72616e646f6d7061ULL;  // "randompa"

[[noreturn]] void fail(const std::string& message) { throw cluster_assignment_error(message); }

std::string hex64(uint64_t value) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string text(16, '0');
  for (int i = 15; i >= 0; --i, value >>= 4) text[i] = digits[value & 15];
  return text;
}

template <class T>
stored_tensor make_tensor(std::string name, tensor_dtype dtype, std::vector<int64_t> shape,
                          const std::vector<T>& values) {
  stored_tensor tensor{std::move(name), dtype, std::move(shape), {}};
  tensor.data.resize(values.size() * sizeof(T));
  if (!values.empty()) std::memcpy(tensor.data.data(), values.data(), tensor.data.size());
  return tensor;
}

// The tensor `name` of `content`, checked for dtype and rank; its shape is returned through it.
template <class T>
std::vector<T> take_tensor(const safetensors_content& content, const std::string& name,
                           tensor_dtype dtype, size_t rank, const std::string& where) {
  const stored_tensor* tensor = content.find(name);
  if (!tensor) fail(where + ": the tensor '" + name + "' is missing");
  if (tensor->dtype != dtype)
    fail(where + ": the tensor '" + name + "' is " + std::string(dtype_name(tensor->dtype)) +
         ", expected " + std::string(dtype_name(dtype)));
  if (tensor->shape.size() != rank)
    fail(where + ": the tensor '" + name + "' has " + std::to_string(tensor->shape.size()) +
         " dimensions, expected " + std::to_string(rank));
  // The safetensors decoder already checked that data holds numel * element size bytes.
  std::vector<T> values(tensor->data.size() / sizeof(T));
  if (!values.empty()) std::memcpy(values.data(), tensor->data.data(), tensor->data.size());
  return values;
}

const std::vector<int64_t>& shape_of(const safetensors_content& content, const std::string& name) {
  return content.find(name)->shape;
}

const std::string& metadata_value(const safetensors_content& content, const std::string& key,
                                  const std::string& where) {
  const auto found = content.metadata.find(key);
  if (found == content.metadata.end()) fail(where + ": the metadata '" + key + "' is missing");
  return found->second;
}

template <class T>
T metadata_number(const safetensors_content& content, const std::string& key,
                  const std::string& where) {
  const std::string& text = metadata_value(content, key, where);
  T value{};
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc{} || end != text.data() + text.size())
    fail(where + ": the metadata '" + key + "' is not a number: \"" + text.substr(0, 40) + "\"");
  return value;
}

std::string describe(const clustered_data& data) {
  return std::to_string(data.count) + " " + data.source + " images at " +
         std::to_string(data.resolution) + "x" + std::to_string(data.resolution) + "x" +
         std::to_string(data.channels) + " from " + data.path + " (fingerprint " +
         data.fingerprint + ")";
}

}  // namespace

void cluster_assignment::check_consistent(const std::string& where) const {
  const auto prefix = where + ": ";
  if (num_clusters < 1) fail(prefix + "the number of clusters must be >= 1, got " +
                             std::to_string(num_clusters));
  if (static_cast<int64_t>(sizes.size()) != num_clusters)
    fail(prefix + std::to_string(sizes.size()) + " cluster sizes for " +
         std::to_string(num_clusters) + " clusters");
  if (static_cast<int64_t>(assignment.size()) != data.count)
    fail(prefix + "the assignment covers " + std::to_string(assignment.size()) +
         " images, the data " + std::to_string(data.count));
  std::vector<int64_t> counted(static_cast<size_t>(num_clusters), 0);
  for (size_t i = 0; i < assignment.size(); ++i) {
    if (assignment[i] < 0 || assignment[i] >= num_clusters)
      fail(prefix + "image " + std::to_string(i) + " is assigned to cluster " +
           std::to_string(assignment[i]) + ", outside [0, " + std::to_string(num_clusters) + ")");
    ++counted[assignment[i]];
  }
  for (int64_t c = 0; c < num_clusters; ++c)
    if (counted[c] != sizes[c])
      fail(prefix + "cluster " + std::to_string(c) + " holds " + std::to_string(counted[c]) +
           " images but its size says " + std::to_string(sizes[c]));
  if (feature_dims < 0 || fine_clusters < 0)
    fail(prefix + "negative feature dimensions or fine cluster count");
  if (static_cast<uint64_t>(coarse_centroids.size()) !=
      static_cast<uint64_t>(num_clusters) * static_cast<uint64_t>(feature_dims))
    fail(prefix + "coarse_centroids holds " + std::to_string(coarse_centroids.size()) +
         " values, expected " + std::to_string(num_clusters) + " x " +
         std::to_string(feature_dims));
  if (static_cast<uint64_t>(fine_centroids.size()) !=
      static_cast<uint64_t>(fine_clusters) * static_cast<uint64_t>(feature_dims))
    fail(prefix + "fine_centroids holds " + std::to_string(fine_centroids.size()) +
         " values, expected " + std::to_string(fine_clusters) + " x " +
         std::to_string(feature_dims));
  if (static_cast<int64_t>(fine_to_coarse.size()) != fine_clusters)
    fail(prefix + "fine_to_coarse has " + std::to_string(fine_to_coarse.size()) +
         " entries for " + std::to_string(fine_clusters) + " fine clusters");
  for (size_t f = 0; f < fine_to_coarse.size(); ++f)
    if (fine_to_coarse[f] < 0 || fine_to_coarse[f] >= num_clusters)
      fail(prefix + "fine cluster " + std::to_string(f) + " maps to cluster " +
           std::to_string(fine_to_coarse[f]) + ", outside [0, " + std::to_string(num_clusters) +
           ")");
  for (const auto* centroids : {&coarse_centroids, &fine_centroids})
    for (float value : *centroids)
      if (!std::isfinite(value)) fail(prefix + "a centroid holds a value that is not finite");
  if (partition != "kmeans" && partition != "random")
    fail(prefix + "unknown partition kind \"" + partition.substr(0, 40) +
         "\" (expected \"kmeans\" or \"random\")");
}

namespace {

// Mixes `bytes` into `hash`, eight at a time (little-endian words), then their count.
uint64_t mix_bytes(uint64_t hash, std::span<const uint8_t> bytes) {
  const size_t whole_words = bytes.size() / 8;
  for (size_t w = 0; w < whole_words; ++w) {
    uint64_t word = 0;
    for (int b = 7; b >= 0; --b) word = (word << 8) | bytes[w * 8 + b];
    hash = splitmix64::mix(hash ^ word);
  }
  uint64_t tail = 0;
  for (size_t i = bytes.size(); i-- > whole_words * 8;) tail = (tail << 8) | bytes[i];
  return splitmix64::mix(hash ^ tail ^ (static_cast<uint64_t>(bytes.size()) << 3));
}

std::span<const uint8_t> bytes_of(const std::string& text) {
  return {reinterpret_cast<const uint8_t*>(text.data()), text.size()};
}

}  // namespace

std::string data_fingerprint(const image_dataset& images) {
  uint64_t hash = splitmix64::mix(0x636c757374657273ULL ^ static_cast<uint64_t>(images.count));
  for (int64_t extent : {int64_t{images.channels}, int64_t{images.height}, int64_t{images.width}})
    hash = splitmix64::mix(hash ^ static_cast<uint64_t>(extent));
  return hex64(mix_bytes(hash, images.pixels));
}

std::string data_fingerprint(const sd_example_set& examples) {
  uint64_t hash =
      splitmix64::mix(0x6c6174656e747331ULL ^ static_cast<uint64_t>(examples.count()));  // "latents1"
  for (const auto& example : examples.examples) {
    hash = splitmix64::mix(hash ^ static_cast<uint64_t>(example.bucket));
    hash = mix_bytes(hash, bytes_of(example.caption));
    // A cache entry's name is the digest of the image file, caption and encoder (latent_cache).
    hash = example.cache_file.empty() ? mix_bytes(hash, example.pixels)
                                      : mix_bytes(hash, bytes_of(example.cache_file.stem().string()));
  }
  return hex64(hash);
}

clustered_data describe_training_data(const run_config& config, const image_dataset& train) {
  return {config.data.source, config.data.path.string(), train.height, train.channels,
          train.count, data_fingerprint(train)};
}

clustered_data describe_training_data(const run_config& config, const sd_example_set& train) {
  return {config.data.source, config.data.path.string(), config.data.resolution,
          config.data.channels, train.count(), data_fingerprint(train)};
}

void write_cluster_assignment(const std::filesystem::path& path,
                              const cluster_assignment& clusters) {
  clusters.check_consistent(path.string());
  safetensors_content content;
  const int64_t k = clusters.num_clusters, d = clusters.feature_dims, f = clusters.fine_clusters;
  content.tensors.push_back(make_tensor("assignment", tensor_dtype::i32,
                                        {static_cast<int64_t>(clusters.assignment.size())},
                                        clusters.assignment));
  content.tensors.push_back(make_tensor("sizes", tensor_dtype::i64, {k}, clusters.sizes));
  content.tensors.push_back(
      make_tensor("coarse_centroids", tensor_dtype::f32, {k, d}, clusters.coarse_centroids));
  content.tensors.push_back(
      make_tensor("fine_centroids", tensor_dtype::f32, {f, d}, clusters.fine_centroids));
  content.tensors.push_back(
      make_tensor("fine_to_coarse", tensor_dtype::i32, {f}, clusters.fine_to_coarse));
  content.metadata = {
      {"format", format_tag},
      {"format_version", format_version},
      {"data.source", clusters.data.source},
      {"data.path", clusters.data.path},
      {"data.resolution", std::to_string(clusters.data.resolution)},
      {"data.channels", std::to_string(clusters.data.channels)},
      {"data.count", std::to_string(clusters.data.count)},
      {"data.fingerprint", clusters.data.fingerprint},
      {"num_clusters", std::to_string(k)},
      {"fine_clusters", std::to_string(f)},
      {"feature_dims", std::to_string(d)},
      {"seed", std::to_string(clusters.seed)},
      {"partition", clusters.partition},
      {"features", clusters.features},
  };
  try {
    write_safetensors_file(path, content);
  } catch (const safetensors_error& error) {
    fail(std::string("cannot write the cluster assignment: ") + error.what());
  }
}

cluster_assignment read_cluster_assignment(const std::filesystem::path& path) {
  const std::string where = path.string();
  std::error_code ignored;
  if (!std::filesystem::exists(path, ignored))
    fail(where + ": no cluster assignment file (run `ddactor cluster --config <run file>` first, "
                 "or set ddm.assignments)");
  safetensors_content content;
  try {
    content = read_safetensors_file(path);
  } catch (const safetensors_error& error) {
    fail(std::string("not a readable cluster assignment: ") + error.what());
  }
  const auto format = content.metadata.find("format");
  if (format == content.metadata.end() || format->second != format_tag)
    fail(where + ": not a ddactor cluster assignment (its metadata has no format = \"" +
         format_tag + "\")");
  if (metadata_value(content, "format_version", where) != format_version)
    fail(where + ": cluster assignment format version \"" +
         metadata_value(content, "format_version", where).substr(0, 20) +
         "\" is not supported (this ddactor reads " + format_version + ")");

  cluster_assignment clusters;
  clusters.assignment = take_tensor<int32_t>(content, "assignment", tensor_dtype::i32, 1, where);
  clusters.sizes = take_tensor<int64_t>(content, "sizes", tensor_dtype::i64, 1, where);
  clusters.coarse_centroids =
      take_tensor<float>(content, "coarse_centroids", tensor_dtype::f32, 2, where);
  clusters.fine_centroids =
      take_tensor<float>(content, "fine_centroids", tensor_dtype::f32, 2, where);
  clusters.fine_to_coarse =
      take_tensor<int32_t>(content, "fine_to_coarse", tensor_dtype::i32, 1, where);
  clusters.num_clusters = metadata_number<int64_t>(content, "num_clusters", where);
  clusters.fine_clusters = metadata_number<int64_t>(content, "fine_clusters", where);
  clusters.feature_dims = metadata_number<int64_t>(content, "feature_dims", where);
  // The shapes must say what the metadata says (their sizes are checked by check_consistent).
  // Copies: GCC 14 takes a reference returned next to a temporary name for a dangling one.
  const auto coarse_shape = shape_of(content, "coarse_centroids");
  const auto fine_shape = shape_of(content, "fine_centroids");
  if (coarse_shape[0] != clusters.num_clusters || coarse_shape[1] != clusters.feature_dims ||
      fine_shape[0] != clusters.fine_clusters || fine_shape[1] != clusters.feature_dims)
    fail(where + ": the centroid shapes do not match num_clusters, fine_clusters and "
                 "feature_dims of the metadata");
  clusters.data.source = metadata_value(content, "data.source", where);
  clusters.data.path = metadata_value(content, "data.path", where);
  clusters.data.resolution = metadata_number<int>(content, "data.resolution", where);
  clusters.data.channels = metadata_number<int>(content, "data.channels", where);
  clusters.data.count = metadata_number<int64_t>(content, "data.count", where);
  clusters.data.fingerprint = metadata_value(content, "data.fingerprint", where);
  clusters.seed = metadata_number<uint64_t>(content, "seed", where);
  clusters.partition = metadata_value(content, "partition", where);
  clusters.features = metadata_value(content, "features", where);
  clusters.check_consistent(where);
  return clusters;
}

void check_assignment_matches(const cluster_assignment& clusters, const clustered_data& loaded,
                              const std::filesystem::path& file) {
  const clustered_data& made = clusters.data;
  std::vector<std::string> differences;
  if (made.source != loaded.source)
    differences.push_back("data.source \"" + made.source + "\" vs \"" + loaded.source + "\"");
  if (made.resolution != loaded.resolution)
    differences.push_back("resolution " + std::to_string(made.resolution) + " vs " +
                          std::to_string(loaded.resolution));
  if (made.channels != loaded.channels)
    differences.push_back("channels " + std::to_string(made.channels) + " vs " +
                          std::to_string(loaded.channels));
  if (made.count != loaded.count)
    differences.push_back(std::to_string(made.count) + " vs " + std::to_string(loaded.count) +
                          " images");
  // Same shape and count but other pixels: another data set, another order, or another holdout.
  if (differences.empty() && made.fingerprint != loaded.fingerprint)
    differences.push_back("the pixels differ (fingerprint " + made.fingerprint + " vs " +
                          loaded.fingerprint + ")");
  if (differences.empty()) return;
  std::string list;
  for (const auto& difference : differences) list += (list.empty() ? "" : "; ") + difference;
  fail(file.string() + ": this cluster assignment was computed for " + describe(made) +
       ", but this run loads " + describe(loaded) + ": " + list +
       ". Run `ddactor cluster` with this run's data settings again, or point ddm.assignments "
       "at the assignment made for this data.");
}

std::vector<int64_t> indices_of_cluster(const cluster_assignment& clusters, int k) {
  if (k < 0 || k >= clusters.num_clusters)
    fail("cluster " + std::to_string(k) + " does not exist: the assignment has " +
         std::to_string(clusters.num_clusters) + " clusters (0 to " +
         std::to_string(clusters.num_clusters - 1) + ")");
  std::vector<int64_t> indices;
  if (static_cast<size_t>(k) < clusters.sizes.size() && clusters.sizes[k] > 0)
    indices.reserve(static_cast<size_t>(clusters.sizes[k]));
  for (size_t i = 0; i < clusters.assignment.size(); ++i)
    if (clusters.assignment[i] == k) indices.push_back(static_cast<int64_t>(i));
  return indices;
}

std::vector<int32_t> random_partition(int64_t n, int64_t k, uint64_t seed) {
  if (k < 1 || k > n || k > std::numeric_limits<int32_t>::max())
    fail("a random partition of " + std::to_string(n) + " images into " + std::to_string(k) +
         " clusters needs 1 <= clusters <= images");
  const auto order = epoch_permutation(n, splitmix64::mix(seed ^ random_partition_stream), 0);
  std::vector<int32_t> assignment(static_cast<size_t>(n));
  const int64_t base = n / k, longer = n % k;
  int64_t position = 0;
  for (int64_t c = 0; c < k; ++c) {
    const int64_t length = base + (c < longer ? 1 : 0);
    for (int64_t j = 0; j < length; ++j)
      assignment[static_cast<size_t>(order[position++])] = static_cast<int32_t>(c);
  }
  return assignment;
}

}  // namespace ddactor
