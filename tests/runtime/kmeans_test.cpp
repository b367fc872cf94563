// Tests of k-means: blobs recovered exactly (Lloyd and mini-batch, swept over k, d and seeds),
// the corner cases k = 1, k = n and duplicate points, re-seeding of empty clusters, determinism
// (seeds, thread counts), weighted k-means against expanded points, and input validation.
#include "runtime/kmeans.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <numeric>
#include <random>
#include <set>
#include <string>
#include <tuple>

namespace ddactor {
namespace {

struct labelled_points {
  std::vector<float> values;
  std::vector<int32_t> truth;
  int64_t rows = 0;
  int64_t dims = 0;

  feature_rows view() const { return {values, rows, dims}; }
};

// `k` Gaussian blobs (sd 1) of unequal sizes (blob b has base + 7 b points), shuffled. Centre b
// sits at 60 (b + 1) on axis b mod d, within 5 of 0 elsewhere: any two centres are 55 or more
// apart, in any dimension.
labelled_points blobs(int k, int dims, int base, uint32_t seed) {
  std::mt19937 random(seed);
  std::normal_distribution<float> noise(0.f, 1.f);
  std::uniform_real_distribution<float> offset(-5.f, 5.f);
  std::vector<std::vector<float>> centres;
  for (int b = 0; b < k; ++b) {
    std::vector<float> c(dims);
    for (auto& v : c) v = offset(random);
    c[b % dims] = 60.f * (b + 1);
    centres.push_back(c);
  }
  std::vector<std::pair<int32_t, std::vector<float>>> rows;
  for (int b = 0; b < k; ++b)
    for (int i = 0; i < base + 7 * b; ++i) {
      std::vector<float> x(dims);
      for (int j = 0; j < dims; ++j) x[j] = centres[b][j] + noise(random);
      rows.emplace_back(b, std::move(x));
    }
  std::shuffle(rows.begin(), rows.end(), random);
  labelled_points out;
  out.rows = static_cast<int64_t>(rows.size());
  out.dims = dims;
  for (auto& [label, x] : rows) {
    out.truth.push_back(label);
    out.values.insert(out.values.end(), x.begin(), x.end());
  }
  return out;
}

labelled_points uniform_points(int64_t n, int dims, uint32_t seed) {
  std::mt19937 random(seed);
  std::uniform_real_distribution<float> value(0.f, 1.f);
  labelled_points out;
  out.rows = n;
  out.dims = dims;
  out.values.resize(static_cast<size_t>(n * dims));
  for (auto& v : out.values) v = value(random);
  return out;
}

// True when the two labelings describe the same partition (a bijection between their labels).
bool same_partition(const std::vector<int32_t>& a, const std::vector<int32_t>& b) {
  if (a.size() != b.size()) return false;
  std::map<int32_t, int32_t> forward, backward;
  for (size_t i = 0; i < a.size(); ++i) {
    auto [f, f_new] = forward.emplace(a[i], b[i]);
    auto [g, g_new] = backward.emplace(b[i], a[i]);
    if (f->second != b[i] || g->second != a[i]) return false;
  }
  return true;
}

// The invariants of every result: shapes, labels in range, sizes and weights that agree with the
// assignment, no empty cluster, centroids that are the cluster means, and the inertia.
void expect_consistent(const kmeans_result& r, const feature_rows& points,
                       std::span<const double> weights = {}) {
  ASSERT_EQ(r.centroids.size(), static_cast<size_t>(r.k * points.dims));
  ASSERT_EQ(r.assignment.size(), static_cast<size_t>(points.rows));
  ASSERT_EQ(r.sizes.size(), static_cast<size_t>(r.k));
  std::vector<int64_t> sizes(r.k, 0);
  std::vector<double> mass(r.k, 0.0), sums(r.k * points.dims, 0.0);
  double inertia = 0;
  for (int64_t i = 0; i < points.rows; ++i) {
    const int32_t c = r.assignment[i];
    ASSERT_GE(c, 0);
    ASSERT_LT(c, r.k);
    const double w = weights.empty() ? 1.0 : weights[i];
    ++sizes[c];
    mass[c] += w;
    for (int64_t j = 0; j < points.dims; ++j) sums[c * points.dims + j] += w * points.values[i * points.dims + j];
  }
  EXPECT_EQ(sizes, r.sizes);
  EXPECT_EQ(std::accumulate(r.sizes.begin(), r.sizes.end(), int64_t{0}), points.rows);
  for (int64_t c = 0; c < r.k; ++c) {
    EXPECT_GT(r.sizes[c], 0) << "cluster " << c << " is empty";
    EXPECT_NEAR(r.cluster_weights[c], mass[c], 1e-9 * mass[c]);
    for (int64_t j = 0; j < points.dims; ++j)
      EXPECT_NEAR(r.centroids[c * points.dims + j], sums[c * points.dims + j] / mass[c],
                  1e-4 * (1 + std::fabs(sums[c * points.dims + j] / mass[c])));
  }
  for (int64_t i = 0; i < points.rows; ++i) {
    const double w = weights.empty() ? 1.0 : weights[i];
    for (int64_t j = 0; j < points.dims; ++j) {
      const double diff = points.values[i * points.dims + j] -
                          r.centroids[r.assignment[i] * points.dims + j];
      inertia += w * diff * diff;
    }
  }
  EXPECT_NEAR(r.inertia, inertia, 1e-4 * (1 + inertia));
}

// --- Blobs -----------------------------------------------------------------------------------

using blob_case = std::tuple<int /*k*/, int /*dims*/, kmeans_algorithm, uint64_t /*seed*/>;

class kmeans_blobs : public ::testing::TestWithParam<blob_case> {};

TEST_P(kmeans_blobs, recovers_well_separated_blobs_exactly) {
  const auto [k, dims, algorithm, seed] = GetParam();
  const auto data = blobs(k, dims, 40, static_cast<uint32_t>(seed * 31 + k * 7 + dims));
  kmeans_options options;
  options.k = k;
  options.seed = seed;
  options.algorithm = algorithm;
  options.batch_size = 64;
  options.max_iterations = algorithm == kmeans_algorithm::minibatch ? 300 : 100;
  const auto result = kmeans(data.view(), options);
  expect_consistent(result, data.view());
  EXPECT_EQ(result.algorithm, algorithm);
  EXPECT_TRUE(same_partition(result.assignment, data.truth))
      << "k " << k << " d " << dims << " seed " << seed << " inertia " << result.inertia;
  // Inertia of the true partition is about n * d (unit variance per dimension).
  EXPECT_LT(result.inertia, 2.0 * data.rows * dims);
  if (algorithm == kmeans_algorithm::lloyd) {
    EXPECT_TRUE(result.converged);
    EXPECT_EQ(nearest_centroids(data.view(), result.centroids), result.assignment);
  }
}

INSTANTIATE_TEST_SUITE_P(
    sweep, kmeans_blobs,
    ::testing::Combine(::testing::Values(2, 3, 5, 8), ::testing::Values(1, 2, 7, 32),
                       ::testing::Values(kmeans_algorithm::lloyd, kmeans_algorithm::minibatch),
                       ::testing::Values(uint64_t{1}, uint64_t{42})));

TEST(kmeans, minibatch_is_close_to_lloyd_on_overlapping_blobs) {
  // Blobs close enough to touch: no exact answer, but the two algorithms should agree closely.
  std::mt19937 random(5);
  std::normal_distribution<float> noise(0.f, 1.f);
  const int k = 6, dims = 4, n = 6000;
  labelled_points data;
  data.rows = n;
  data.dims = dims;
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < dims; ++j) data.values.push_back(noise(random) + 3.f * ((i % k) == j));
  kmeans_options options;
  options.k = k;
  options.seed = 9;
  options.algorithm = kmeans_algorithm::lloyd;
  options.max_iterations = 300;
  const auto lloyd = kmeans(data.view(), options);
  options.algorithm = kmeans_algorithm::minibatch;
  options.batch_size = 256;
  const auto minibatch = kmeans(data.view(), options);
  expect_consistent(lloyd, data.view());
  expect_consistent(minibatch, data.view());
  EXPECT_LT(minibatch.inertia, 1.03 * lloyd.inertia)
      << "lloyd " << lloyd.inertia << " minibatch " << minibatch.inertia;
  EXPECT_GT(minibatch.inertia, 0.97 * lloyd.inertia);
}

TEST(kmeans, automatic_picks_minibatch_above_the_threshold) {
  const auto data = blobs(3, 2, 30, 3);
  kmeans_options options;
  options.k = 3;
  options.minibatch_above = data.rows;
  EXPECT_EQ(kmeans(data.view(), options).algorithm, kmeans_algorithm::lloyd);
  options.minibatch_above = data.rows - 1;
  const auto result = kmeans(data.view(), options);
  EXPECT_EQ(result.algorithm, kmeans_algorithm::minibatch);
  EXPECT_TRUE(same_partition(result.assignment, data.truth));
}

// --- Corner cases ------------------------------------------------------------------------------

TEST(kmeans, one_cluster_is_the_mean) {
  const auto data = uniform_points(101, 3, 1);
  kmeans_options options;
  options.k = 1;
  const auto result = kmeans(data.view(), options);
  expect_consistent(result, data.view());
  EXPECT_EQ(result.sizes, std::vector<int64_t>{101});
  for (int j = 0; j < 3; ++j) {
    double mean = 0;
    for (int i = 0; i < 101; ++i) mean += data.values[i * 3 + j];
    EXPECT_NEAR(result.centroids[j], mean / 101, 1e-6);
  }
  EXPECT_TRUE(result.converged);
}

TEST(kmeans, as_many_clusters_as_points_puts_each_point_alone) {
  for (auto algorithm : {kmeans_algorithm::lloyd, kmeans_algorithm::minibatch}) {
    const auto data = uniform_points(17, 2, 2);
    kmeans_options options;
    options.k = 17;
    options.algorithm = algorithm;
    const auto result = kmeans(data.view(), options);
    expect_consistent(result, data.view());
    EXPECT_EQ(result.sizes, std::vector<int64_t>(17, 1));
    EXPECT_EQ(result.inertia, 0.0);
    EXPECT_EQ(std::set<int32_t>(result.assignment.begin(), result.assignment.end()).size(), 17u);
  }
}

TEST(kmeans, duplicate_points_fill_every_cluster) {
  // Three distinct points, each four times.
  labelled_points data;
  data.dims = 2;
  for (int copy = 0; copy < 4; ++copy)
    for (float v : {0.f, 10.f, 20.f}) {
      data.values.insert(data.values.end(), {v, -v});
      data.truth.push_back(static_cast<int32_t>(v / 10));
    }
  data.rows = 12;
  kmeans_options options;
  for (int64_t k : {3, 5, 12}) {
    options.k = k;
    for (uint64_t seed : {0, 1, 2, 3}) {
      options.seed = seed;
      const auto result = kmeans(data.view(), options);
      expect_consistent(result, data.view());
      EXPECT_EQ(result.inertia, 0.0) << "k " << k << " seed " << seed;
      if (k == 3) {
        EXPECT_TRUE(same_partition(result.assignment, data.truth));
      }
    }
  }
  // All points the same.
  const std::vector<float> same(8, 1.5f);
  options.k = 4;
  const auto result = kmeans({same, 4, 2}, options);
  EXPECT_EQ(result.sizes, std::vector<int64_t>(4, 1));
  EXPECT_EQ(result.inertia, 0.0);
}

TEST(kmeans, empty_cluster_from_a_bad_start_is_reseeded) {
  const auto data = blobs(3, 2, 30, 11);
  // Two centres on the same spot (the second one gets nothing: ties go to the lowest index) and
  // one far from every point.
  kmeans_options options;
  options.k = 3;
  options.algorithm = kmeans_algorithm::lloyd;
  options.initial_centroids = {data.values[0], data.values[1], data.values[0], data.values[1],
                               1e6f, 1e6f};
  const auto result = kmeans(data.view(), options);
  expect_consistent(result, data.view());
  EXPECT_GE(result.reseeded, 2);
  EXPECT_TRUE(same_partition(result.assignment, data.truth));
}

TEST(kmeans, minibatch_reseeds_centres_that_never_won_a_point) {
  const auto data = blobs(3, 2, 30, 12);
  kmeans_options options;
  options.k = 4;
  options.algorithm = kmeans_algorithm::minibatch;
  options.batch_size = 16;
  options.initial_centroids = {data.values[0], data.values[1], -1e6f, -1e6f,
                               1e6f, 1e6f, 1e6f, -1e6f};
  const auto result = kmeans(data.view(), options);
  expect_consistent(result, data.view());
  EXPECT_GE(result.reseeded, 1);
}

// --- Determinism -------------------------------------------------------------------------------

TEST(kmeans, same_seed_gives_the_same_result_and_seeds_matter) {
  const auto data = uniform_points(500, 3, 4);
  for (auto algorithm : {kmeans_algorithm::lloyd, kmeans_algorithm::minibatch}) {
    kmeans_options options;
    options.k = 7;
    options.algorithm = algorithm;
    options.batch_size = 50;
    options.seed = 123;
    const auto a = kmeans(data.view(), options), b = kmeans(data.view(), options);
    EXPECT_EQ(a.centroids, b.centroids);
    EXPECT_EQ(a.assignment, b.assignment);
    EXPECT_EQ(a.inertia, b.inertia);
    EXPECT_EQ(a.iterations, b.iterations);
    // Uniform noise has no preferred partition: some other seed lands elsewhere.
    bool any_differs = false;
    for (uint64_t seed = 124; seed < 130 && !any_differs; ++seed) {
      options.seed = seed;
      any_differs = kmeans(data.view(), options).centroids != a.centroids;
    }
    EXPECT_TRUE(any_differs);
  }
}

TEST(kmeans, thread_count_does_not_change_a_bit) {
  // Large enough that the passes are split across threads.
  const auto data = uniform_points(40000, 8, 6);
  for (auto algorithm : {kmeans_algorithm::lloyd, kmeans_algorithm::minibatch}) {
    kmeans_options options;
    options.k = 16;
    options.algorithm = algorithm;
    options.max_iterations = 5;
    options.batch_size = 8192;
    options.threads = 1;
    const auto one = kmeans(data.view(), options);
    for (int threads : {2, 3, 8}) {
      options.threads = threads;
      const auto many = kmeans(data.view(), options);
      EXPECT_EQ(one.centroids, many.centroids) << threads;
      EXPECT_EQ(one.assignment, many.assignment) << threads;
      EXPECT_EQ(one.inertia, many.inertia) << threads;
    }
  }
}

// --- Weighted ----------------------------------------------------------------------------------

TEST(kmeans, weighted_equals_unweighted_on_expanded_points) {
  const auto data = blobs(4, 3, 6, 21);
  // Weights 1..4 and the expanded set with that many copies of each point, copies adjacent.
  std::vector<double> weights;
  std::vector<float> expanded;
  std::vector<int64_t> origin;
  for (int64_t i = 0; i < data.rows; ++i) {
    weights.push_back(static_cast<double>(1 + i % 4));
    for (int copy = 0; copy <= i % 4; ++copy) {
      expanded.insert(expanded.end(), data.values.begin() + i * 3, data.values.begin() + i * 3 + 3);
      origin.push_back(i);
    }
  }
  const feature_rows expanded_view{expanded, static_cast<int64_t>(origin.size()), 3};
  // k other than the number of blobs too, so that centres settle between blobs.
  for (int64_t k : {2, 4, 6}) {
    kmeans_options options;
    options.k = k;
    options.algorithm = kmeans_algorithm::lloyd;
    options.initial_centroids.assign(data.values.begin(), data.values.begin() + k * 3);
    const auto weighted = weighted_kmeans(data.view(), weights, options);
    const auto plain = kmeans(expanded_view, options);
    expect_consistent(weighted, data.view(), weights);
    for (size_t i = 0; i < origin.size(); ++i)
      ASSERT_EQ(plain.assignment[i], weighted.assignment[origin[i]]) << "k " << k << " row " << i;
    for (size_t j = 0; j < plain.centroids.size(); ++j)
      EXPECT_NEAR(plain.centroids[j], weighted.centroids[j], 1e-4);
    for (int64_t c = 0; c < k; ++c)
      EXPECT_EQ(static_cast<double>(plain.sizes[c]), weighted.cluster_weights[c]);
    EXPECT_NEAR(plain.inertia, weighted.inertia, 1e-6 * plain.inertia);
    EXPECT_EQ(plain.iterations, weighted.iterations);
  }
}

TEST(kmeans, one_weighted_cluster_is_the_weighted_mean) {
  const std::vector<float> values = {0.f, 10.f};
  const std::vector<double> weights = {1.0, 9.0};
  kmeans_options options;
  options.k = 1;
  const auto result = weighted_kmeans({values, 2, 1}, weights, options);
  EXPECT_NEAR(result.centroids[0], 9.0, 1e-6);
  EXPECT_NEAR(result.inertia, 1.0 * 81 + 9.0 * 1, 1e-4);
  EXPECT_EQ(result.sizes, std::vector<int64_t>{2});
  EXPECT_EQ(result.cluster_weights, std::vector<double>{10.0});
}

TEST(kmeans, weighted_recovers_blobs) {
  const auto data = blobs(5, 4, 20, 8);
  std::vector<double> weights(data.rows);
  for (int64_t i = 0; i < data.rows; ++i) weights[i] = 0.5 + (i % 13);
  kmeans_options options;
  options.k = 5;
  const auto result = weighted_kmeans(data.view(), weights, options);
  expect_consistent(result, data.view(), weights);
  EXPECT_TRUE(same_partition(result.assignment, data.truth));
}

// --- Validation --------------------------------------------------------------------------------

std::string error_of(const std::function<void()>& call) {
  try {
    call();
  } catch (const kmeans_error& e) {
    return e.what();
  }
  return "";
}

TEST(kmeans, invalid_input_is_refused_with_a_clear_message) {
  const auto data = uniform_points(5, 2, 1);
  kmeans_options options;
  options.k = 6;
  EXPECT_EQ(error_of([&] { kmeans(data.view(), options); }),
            "k-means: k = 6 exceeds the number of points (5)");
  options.k = 0;
  EXPECT_EQ(error_of([&] { kmeans(data.view(), options); }), "k-means: k must be >= 1, got 0");
  options.k = 2;
  EXPECT_EQ(error_of([&] { kmeans({data.values, 10, 0}, options); }),
            "k-means: feature rows need at least one dimension, got d = 0");
  EXPECT_EQ(error_of([&] { kmeans({{}, 0, 2}, options); }), "k-means: no points to cluster");
  EXPECT_NE(error_of([&] { kmeans({data.values, 4, 2}, options); }).find("need 4 * 2 values, got 10"),
            std::string::npos);
  auto broken = data.values;
  broken[7] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_EQ(error_of([&] { kmeans({broken, 5, 2}, options); }),
            "k-means: feature 1 of point 3 is not finite (nan)");
  broken[7] = std::numeric_limits<float>::infinity();
  EXPECT_NE(error_of([&] { kmeans({broken, 5, 2}, options); }).find("not finite"), std::string::npos);

  const std::vector<double> zero = {1, 1, 0, 1, 1};
  EXPECT_NE(error_of([&] { weighted_kmeans(data.view(), zero, options); })
                .find("the weight of point 2 must be positive"),
            std::string::npos);
  const std::vector<double> short_weights = {1, 1};
  EXPECT_NE(error_of([&] { weighted_kmeans(data.view(), short_weights, options); })
                .find("5 points but 2 weights"),
            std::string::npos);

  options.initial_centroids = {1.f, 2.f, 3.f};
  EXPECT_NE(error_of([&] { kmeans(data.view(), options); }).find("initial_centroids"),
            std::string::npos);
  options.initial_centroids.clear();
  options.max_iterations = 0;
  EXPECT_NE(error_of([&] { kmeans(data.view(), options); }).find("max_iterations"),
            std::string::npos);
  options.max_iterations = 10;
  options.batch_size = 0;
  EXPECT_NE(error_of([&] { kmeans(data.view(), options); }).find("batch_size"), std::string::npos);
  options.batch_size = 10;
  options.tolerance = -1;
  EXPECT_NE(error_of([&] { kmeans(data.view(), options); }).find("tolerance"), std::string::npos);

  EXPECT_NE(error_of([&] { nearest_centroids(data.view(), std::vector<float>{1.f, 2.f, 3.f}); })
                .find("whole number"),
            std::string::npos);
}

TEST(kmeans, nearest_centroids_breaks_ties_towards_the_lowest_index) {
  const std::vector<float> points = {0.f, 1.f, 2.f, 3.f, 1.5f};
  const std::vector<float> centres = {1.f, 2.f, 1.f};
  EXPECT_EQ(nearest_centroids({points, 5, 1}, centres),
            (std::vector<int32_t>{0, 0, 1, 1, 0}));
}

}  // namespace
}  // namespace ddactor
