// Tests of the DDM assignment file: round trips (k-means and random kinds), refusal of broken,
// foreign, truncated or inconsistent files with the path in the message, the data identity check
// a peer runs before training on a cluster, the pixel fingerprint, indices_of_cluster and the
// balanced random partition.
#include "runtime/cluster_assignment.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <limits>
#include <functional>
#include <numeric>
#include <set>

#include "runtime/safetensors.hpp"
#include "tests/temporary_folder.hpp"

namespace ddactor {
namespace {

namespace fs = std::filesystem;

struct scratch_folder : testing::temporary_folder {
  scratch_folder() : temporary_folder("ddactor_cluster_assignment_test") {}
};

// 10 images, 3 clusters, 2-d features, 4 fine clusters.
cluster_assignment sample_assignment() {
  cluster_assignment c;
  c.num_clusters = 3;
  c.assignment = {0, 1, 2, 2, 1, 0, 0, 2, 1, 1};
  c.sizes = {3, 4, 3};
  c.feature_dims = 2;
  c.coarse_centroids = {0.f, 1.f, 2.f, 3.f, -4.f, 5.5f};
  c.fine_clusters = 4;
  c.fine_centroids = {0.f, 1.f, 2.f, 3.f, -4.f, 5.5f, 7.f, 8.f};
  c.fine_to_coarse = {0, 1, 2, 2};
  c.data = {"fashion-mnist", "/usr/share/datasets/fashion-mnist", 28, 1, 10, "0123456789abcdef"};
  c.seed = 77;
  c.partition = "kmeans";
  c.features = "builtin pixels 8x8 -> PCA 2";
  return c;
}

std::string error_of(const std::function<void()>& call) {
  try {
    call();
  } catch (const cluster_assignment_error& e) {
    return e.what();
  }
  return "";
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

TEST(cluster_assignment, round_trips_kmeans_and_random_kinds) {
  scratch_folder dir;
  const auto file = dir.path() / "clusters.safetensors";
  const auto clusters = sample_assignment();
  write_cluster_assignment(file, clusters);
  EXPECT_EQ(read_cluster_assignment(file), clusters);

  // The file is plain safetensors with the documented names, dtypes and shapes.
  const auto content = read_safetensors_file(file);
  EXPECT_EQ(content.find("assignment")->dtype, tensor_dtype::i32);
  EXPECT_EQ(content.find("sizes")->dtype, tensor_dtype::i64);
  EXPECT_EQ(content.find("coarse_centroids")->shape, (std::vector<int64_t>{3, 2}));
  EXPECT_EQ(content.find("fine_centroids")->shape, (std::vector<int64_t>{4, 2}));
  EXPECT_EQ(content.find("fine_to_coarse")->shape, (std::vector<int64_t>{4}));
  EXPECT_EQ(content.metadata.at("data.count"), "10");
  EXPECT_EQ(content.metadata.at("partition"), "kmeans");
  EXPECT_EQ(content.metadata.at("seed"), "77");

  cluster_assignment random = clusters;
  random.partition = "random";
  random.feature_dims = 0;
  random.fine_clusters = 0;
  random.coarse_centroids.clear();
  random.fine_centroids.clear();
  random.fine_to_coarse.clear();
  random.features = "";
  random.seed = UINT64_MAX;
  write_cluster_assignment(file, random);
  EXPECT_EQ(read_cluster_assignment(file), random);
}

TEST(cluster_assignment, inconsistent_assignments_are_not_written) {
  scratch_folder dir;
  const auto file = dir.path() / "c.safetensors";
  auto c = sample_assignment();
  c.sizes[0] = 4;
  EXPECT_TRUE(contains(error_of([&] { write_cluster_assignment(file, c); }),
                       "cluster 0 holds 3 images but its size says 4"));
  c = sample_assignment();
  c.assignment[4] = 3;
  EXPECT_TRUE(contains(error_of([&] { write_cluster_assignment(file, c); }),
                       "image 4 is assigned to cluster 3, outside [0, 3)"));
  c = sample_assignment();
  c.fine_to_coarse[1] = -1;
  EXPECT_TRUE(contains(error_of([&] { write_cluster_assignment(file, c); }), "fine cluster 1"));
  c = sample_assignment();
  c.coarse_centroids.pop_back();
  EXPECT_TRUE(contains(error_of([&] { write_cluster_assignment(file, c); }), "coarse_centroids"));
  c = sample_assignment();
  c.data.count = 11;
  EXPECT_TRUE(contains(error_of([&] { write_cluster_assignment(file, c); }), "covers 10 images"));
  c = sample_assignment();
  c.partition = "spectral";
  EXPECT_TRUE(contains(error_of([&] { write_cluster_assignment(file, c); }), "spectral"));
  EXPECT_FALSE(fs::exists(file));
}

// Writes `clusters` to `file`, then lets `edit` change the raw safetensors content.
void write_edited(const fs::path& file, const std::function<void(safetensors_content&)>& edit) {
  write_cluster_assignment(file, sample_assignment());
  auto content = read_safetensors_file(file);
  edit(content);
  write_safetensors_file(file, content);
}

stored_tensor& tensor_named(safetensors_content& content, const std::string& name) {
  for (auto& tensor : content.tensors)
    if (tensor.name == name) return tensor;
  throw std::logic_error("no tensor " + name);
}

TEST(cluster_assignment, broken_files_are_refused_naming_the_file) {
  scratch_folder dir;
  const auto file = dir.path() / "clusters.safetensors";
  const std::string name = file.string();
  const auto read_error = [&] { return error_of([&] { read_cluster_assignment(file); }); };

  auto message = read_error();
  EXPECT_TRUE(contains(message, name + ": no cluster assignment file")) << message;
  EXPECT_TRUE(contains(message, "ddactor cluster")) << message;

  std::ofstream(file) << "not a safetensors file at all";
  message = read_error();
  EXPECT_TRUE(contains(message, "not a readable cluster assignment")) << message;
  EXPECT_TRUE(contains(message, name)) << message;

  write_edited(file, [](safetensors_content& c) { c.metadata.erase("format"); });
  EXPECT_EQ(read_error(), name + ": not a ddactor cluster assignment (its metadata has no format = "
                                 "\"ddactor-clusters\")");
  write_edited(file, [](safetensors_content& c) { c.metadata["format_version"] = "2"; });
  EXPECT_TRUE(contains(read_error(), "format version \"2\" is not supported"));
  write_edited(file, [](safetensors_content& c) {
    c.tensors.erase(c.tensors.begin());  // "assignment"
  });
  EXPECT_EQ(read_error(), name + ": the tensor 'assignment' is missing");
  write_edited(file, [](safetensors_content& c) {
    auto& sizes = tensor_named(c, "sizes");
    sizes.dtype = tensor_dtype::i32;
    sizes.shape = {6};
  });
  EXPECT_EQ(read_error(), name + ": the tensor 'sizes' is I32, expected I64");
  write_edited(file, [](safetensors_content& c) {
    auto& assignment = tensor_named(c, "assignment");
    assignment.shape = {2, 5};
  });
  EXPECT_EQ(read_error(), name + ": the tensor 'assignment' has 2 dimensions, expected 1");
  write_edited(file, [](safetensors_content& c) {
    auto& assignment = tensor_named(c, "assignment");
    const int32_t out_of_range = 7;
    std::memcpy(assignment.data.data() + 4 * 3, &out_of_range, 4);
  });
  EXPECT_TRUE(contains(read_error(), "image 3 is assigned to cluster 7"));
  write_edited(file, [](safetensors_content& c) { c.metadata["num_clusters"] = "3x"; });
  EXPECT_EQ(read_error(), name + ": the metadata 'num_clusters' is not a number: \"3x\"");
  write_edited(file, [](safetensors_content& c) { c.metadata["feature_dims"] = "1"; });
  EXPECT_TRUE(contains(read_error(), "centroid shapes do not match"));
  write_edited(file, [](safetensors_content& c) { c.metadata["data.count"] = "11"; });
  EXPECT_TRUE(contains(read_error(), "covers 10 images, the data 11"));
  write_edited(file, [](safetensors_content& c) { c.metadata.erase("data.fingerprint"); });
  EXPECT_EQ(read_error(), name + ": the metadata 'data.fingerprint' is missing");
  write_edited(file, [](safetensors_content& c) {
    auto& centroids = tensor_named(c, "fine_centroids");
    const float nan = std::numeric_limits<float>::quiet_NaN();
    std::memcpy(centroids.data.data(), &nan, 4);
  });
  EXPECT_TRUE(contains(read_error(), "not finite"));
}

TEST(cluster_assignment, every_truncation_is_refused) {
  scratch_folder dir;
  const auto file = dir.path() / "whole.safetensors", cut = dir.path() / "cut.safetensors";
  write_cluster_assignment(file, sample_assignment());
  std::ifstream in(file, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  for (size_t length = 0; length < bytes.size(); ++length) {
    std::ofstream(cut, std::ios::binary | std::ios::trunc).write(bytes.data(), length);
    EXPECT_TRUE(contains(error_of([&] { read_cluster_assignment(cut); }), cut.string()))
        << "length " << length;
  }
}

// --- Which data an assignment belongs to -------------------------------------------------------

image_dataset tiny_images(int count) {
  image_dataset data;
  data.count = count;
  data.channels = 1;
  data.height = data.width = 3;
  for (int i = 0; i < count * 9; ++i) data.pixels.push_back(static_cast<uint8_t>(i * 37 + 5));
  return data;
}

TEST(cluster_assignment, fingerprint_follows_the_pixels_and_shape_only) {
  const auto images = tiny_images(5);
  // Pinned (checked against an independent Python version of the hash): the fingerprint must be
  // the same on every machine and in every later version that reads the files written now.
  EXPECT_EQ(data_fingerprint(images), "6cb7ce516830c7c0");
  auto labelled = images;
  labelled.labels = {0, 1, 2, 3, 4};
  EXPECT_EQ(data_fingerprint(labelled), data_fingerprint(images));
  auto changed = images;
  changed.pixels[44] ^= 1;  // the last byte: the tail word is covered too
  EXPECT_NE(data_fingerprint(changed), data_fingerprint(images));
  changed = images;
  changed.pixels[0] ^= 1;
  EXPECT_NE(data_fingerprint(changed), data_fingerprint(images));
  auto reshaped = images;
  reshaped.count = 15;
  reshaped.height = reshaped.width = 1;
  reshaped.channels = 3;
  EXPECT_NE(data_fingerprint(reshaped), data_fingerprint(images));
  EXPECT_NE(data_fingerprint(tiny_images(4)), data_fingerprint(images));
}

TEST(cluster_assignment, data_identity_mismatches_are_refused_with_every_difference) {
  run_config config;
  config.data.path = "/data/fmnist";
  const auto images = tiny_images(10);
  auto clusters = sample_assignment();
  clusters.data = describe_training_data(config, images);
  EXPECT_EQ(clusters.data.source, "fashion-mnist");
  EXPECT_EQ(clusters.data.resolution, 3);
  EXPECT_EQ(clusters.data.count, 10);
  const fs::path file = "/shared/clusters.safetensors";

  // The same images elsewhere on disk are fine.
  config.data.path = "/elsewhere";
  EXPECT_NO_THROW(check_assignment_matches(clusters, describe_training_data(config, images), file));

  auto other = images;
  other.pixels[3] = 0;
  auto message = error_of(
      [&] { check_assignment_matches(clusters, describe_training_data(config, other), file); });
  EXPECT_TRUE(contains(message, "/shared/clusters.safetensors: this cluster assignment was "
                                "computed for 10 fashion-mnist images at 3x3x1"))
      << message;
  EXPECT_TRUE(contains(message, "the pixels differ")) << message;

  config.data.source = "folder";
  const auto fewer = tiny_images(9);
  message = error_of(
      [&] { check_assignment_matches(clusters, describe_training_data(config, fewer), file); });
  EXPECT_TRUE(contains(message, "data.source \"fashion-mnist\" vs \"folder\"; 10 vs 9 images"))
      << message;
  EXPECT_TRUE(contains(message, "Run `ddactor cluster`")) << message;
}

// --- Clusters as index lists ---------------------------------------------------------------------

TEST(cluster_assignment, indices_of_cluster_lists_each_cluster_in_order) {
  const auto clusters = sample_assignment();
  EXPECT_EQ(indices_of_cluster(clusters, 0), (std::vector<int64_t>{0, 5, 6}));
  EXPECT_EQ(indices_of_cluster(clusters, 1), (std::vector<int64_t>{1, 4, 8, 9}));
  EXPECT_EQ(indices_of_cluster(clusters, 2), (std::vector<int64_t>{2, 3, 7}));
  EXPECT_EQ(error_of([&] { indices_of_cluster(clusters, 3); }),
            "cluster 3 does not exist: the assignment has 3 clusters (0 to 2)");
  EXPECT_FALSE(error_of([&] { indices_of_cluster(clusters, -1); }).empty());
}

class random_partition_sweep
    : public ::testing::TestWithParam<std::tuple<int64_t /*n*/, int64_t /*k*/>> {};

TEST_P(random_partition_sweep, is_balanced_complete_and_seeded) {
  const auto [n, k] = GetParam();
  const auto a = random_partition(n, k, 5);
  ASSERT_EQ(a.size(), static_cast<size_t>(n));
  std::vector<int64_t> sizes(k, 0);
  for (int32_t c : a) {
    ASSERT_GE(c, 0);
    ASSERT_LT(c, k);
    ++sizes[c];
  }
  for (int64_t c = 0; c < k; ++c) EXPECT_EQ(sizes[c], n / k + (c < n % k ? 1 : 0)) << c;
  EXPECT_EQ(random_partition(n, k, 5), a);
  if (k > 1 && n > 3) {
    EXPECT_NE(random_partition(n, k, 6), a);
  }
}

INSTANTIATE_TEST_SUITE_P(sizes, random_partition_sweep,
                         ::testing::Values(std::tuple<int64_t, int64_t>{1, 1},
                                           std::tuple<int64_t, int64_t>{10, 3},
                                           std::tuple<int64_t, int64_t>{10, 10},
                                           std::tuple<int64_t, int64_t>{1000, 4},
                                           std::tuple<int64_t, int64_t>{60000, 4},
                                           std::tuple<int64_t, int64_t>{997, 16}));

TEST(cluster_assignment, random_partition_refuses_impossible_sizes) {
  EXPECT_TRUE(contains(error_of([] { random_partition(3, 4, 0); }), "3 images into 4 clusters"));
  EXPECT_FALSE(error_of([] { random_partition(3, 0, 0); }).empty());
}

}  // namespace
}  // namespace ddactor
