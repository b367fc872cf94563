// k-means++ seeding, Lloyd and mini-batch k-means, weighted or not; see kmeans.hpp.
#include "runtime/kmeans.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <thread>

#include "runtime/data_order.hpp"

namespace ddactor {

namespace {

// Below this many distance terms (points x centres x dims) a pass runs on the calling thread:
// starting threads would cost more than it saves.
constexpr int64_t min_terms_per_thread = 1 << 20;

// Streams of the seed, so that seeding and batch sampling never share random numbers.
constexpr uint64_t seeding_stream = 0x6b6d65616e732b2bULL;  // "kmeans++"
constexpr uint64_t batch_stream = 0x6d696e6962617463ULL;    // "minibatc"

// Squared Euclidean distance with eight partial sums in a fixed order: the compiler can keep them
// in one vector register (it may not reorder a single float accumulator without -ffast-math), and
// the result depends only on the two rows.
float squared_distance(const float* a, const float* b, int64_t dims) {
  float lanes[8] = {};
  int64_t j = 0;
  for (; j + 8 <= dims; j += 8)
    for (int lane = 0; lane < 8; ++lane) {
      const float diff = a[j + lane] - b[j + lane];
      lanes[lane] += diff * diff;
    }
  float tail = 0;
  for (; j < dims; ++j) {
    const float diff = a[j] - b[j];
    tail += diff * diff;
  }
  return ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) +
         ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7])) + tail;
}

int resolve_threads(int requested) {
  if (requested > 0) return requested;
  return static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}

// Runs body(begin, end) over [0, count) in contiguous chunks, one per thread. Each index is
// handled by exactly one call, so per-index results never depend on the thread count.
template <class Body>
void parallel_ranges(int64_t count, int64_t terms_per_index, int threads, const Body& body) {
  const int64_t by_work =
      std::max<int64_t>(1, count * std::max<int64_t>(1, terms_per_index) / min_terms_per_thread);
  const int64_t workers = std::min<int64_t>({resolve_threads(threads), by_work, count});
  if (workers <= 1) {
    body(int64_t{0}, count);
    return;
  }
  std::vector<std::thread> pool;
  pool.reserve(static_cast<size_t>(workers - 1));
  const int64_t chunk = (count + workers - 1) / workers;
  for (int64_t w = 1; w < workers; ++w) {
    const int64_t begin = std::min(count, w * chunk), end = std::min(count, begin + chunk);
    pool.emplace_back([&body, begin, end] { body(begin, end); });
  }
  body(int64_t{0}, std::min(count, chunk));
  for (auto& thread : pool) thread.join();
}

// A uniform double in [0, 1) from the top 53 bits of a draw.
double uniform01(splitmix64& random) {
  return static_cast<double>(random.next() >> 11) * 0x1.0p-53;
}

// One view of the input for the passes below: points, optional weights, options.
struct problem {
  const float* points;
  int64_t n;
  int64_t dims;
  std::span<const double> weights;  // empty: every weight is 1
  int64_t k;
  int threads;

  const float* row(int64_t i) const { return points + i * dims; }
  double weight(int64_t i) const { return weights.empty() ? 1.0 : weights[i]; }
};

void validate(const feature_rows& points, std::span<const double> weights, bool weighted,
              const kmeans_options& options) {
  const auto fail = [](const std::string& what) { throw kmeans_error("k-means: " + what); };
  if (points.dims < 1) fail("feature rows need at least one dimension, got d = " +
                            std::to_string(points.dims));
  if (points.rows < 1) fail("no points to cluster");
  int64_t expected = 0;
  if (__builtin_mul_overflow(points.rows, points.dims, &expected) ||
      static_cast<uint64_t>(expected) != points.values.size())
    fail(std::to_string(points.rows) + " x " + std::to_string(points.dims) + " feature rows need " +
         std::to_string(points.rows) + " * " + std::to_string(points.dims) + " values, got " +
         std::to_string(points.values.size()));
  if (options.k < 1) fail("k must be >= 1, got " + std::to_string(options.k));
  if (options.k > points.rows)
    fail("k = " + std::to_string(options.k) + " exceeds the number of points (" +
         std::to_string(points.rows) + ")");
  if (options.k > std::numeric_limits<int32_t>::max())
    fail("k = " + std::to_string(options.k) + " is too large");
  for (size_t i = 0; i < points.values.size(); ++i)
    if (!std::isfinite(points.values[i]))
      fail("feature " + std::to_string(i % points.dims) + " of point " +
           std::to_string(i / points.dims) + " is not finite (" +
           std::to_string(points.values[i]) + ")");
  if (weighted) {
    if (static_cast<int64_t>(weights.size()) != points.rows)
      fail(std::to_string(points.rows) + " points but " + std::to_string(weights.size()) +
           " weights");
    for (size_t i = 0; i < weights.size(); ++i)
      if (!(std::isfinite(weights[i]) && weights[i] > 0))
        fail("the weight of point " + std::to_string(i) + " must be positive and finite, got " +
             std::to_string(weights[i]));
  }
  if (options.max_iterations < 1)
    fail("max_iterations must be >= 1, got " + std::to_string(options.max_iterations));
  if (!(std::isfinite(options.tolerance) && options.tolerance >= 0))
    fail("tolerance must be finite and >= 0, got " + std::to_string(options.tolerance));
  if (options.batch_size < 1)
    fail("batch_size must be >= 1, got " + std::to_string(options.batch_size));
  if (options.minibatch_above < 0)
    fail("minibatch_above must be >= 0, got " + std::to_string(options.minibatch_above));
  if (options.threads < 0) fail("threads must be >= 0, got " + std::to_string(options.threads));
  if (!options.initial_centroids.empty()) {
    if (static_cast<int64_t>(options.initial_centroids.size()) != options.k * points.dims)
      fail("initial_centroids must hold k x d = " + std::to_string(options.k * points.dims) +
           " values, got " + std::to_string(options.initial_centroids.size()));
    for (float value : options.initial_centroids)
      if (!std::isfinite(value)) fail("initial_centroids holds a value that is not finite");
  }
}

// k-means++ (D^2 sampling). When every point already coincides with a chosen centre (fewer
// distinct points than k), the remaining centres are drawn uniformly: they duplicate a centre and
// the empty-cluster rule later hands each of them a point.
std::vector<float> seed_centroids(const problem& p, uint64_t seed) {
  splitmix64 random(splitmix64::mix(seed ^ seeding_stream));
  std::vector<float> centres(static_cast<size_t>(p.k * p.dims));
  const auto place = [&](int64_t centre, int64_t point) {
    std::copy(p.row(point), p.row(point) + p.dims, centres.begin() + centre * p.dims);
  };

  int64_t first = 0;
  if (p.weights.empty()) {
    first = static_cast<int64_t>(random.bounded(static_cast<uint64_t>(p.n)));
  } else {
    double total = 0;
    for (double w : p.weights) total += w;
    const double target = uniform01(random) * total;
    double cumulative = 0;
    first = p.n - 1;
    for (int64_t i = 0; i < p.n; ++i) {
      cumulative += p.weights[i];
      if (cumulative > target) {
        first = i;
        break;
      }
    }
  }
  place(0, first);

  std::vector<float> closest(static_cast<size_t>(p.n));
  parallel_ranges(p.n, p.dims, p.threads, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) closest[i] = squared_distance(p.row(i), &centres[0], p.dims);
  });
  for (int64_t c = 1; c < p.k; ++c) {
    double total = 0;
    for (int64_t i = 0; i < p.n; ++i) total += p.weight(i) * closest[i];
    int64_t chosen = -1;
    if (total > 0) {
      const double target = uniform01(random) * total;
      double cumulative = 0;
      for (int64_t i = 0; i < p.n; ++i) {
        const double mass = p.weight(i) * closest[i];
        if (mass <= 0) continue;
        cumulative += mass;
        chosen = i;  // the last point with mass, should rounding leave target unreached
        if (cumulative > target) break;
      }
    } else {
      chosen = static_cast<int64_t>(random.bounded(static_cast<uint64_t>(p.n)));
    }
    place(c, chosen);
    const float* centre = &centres[c * p.dims];
    parallel_ranges(p.n, p.dims, p.threads, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i)
        closest[i] = std::min(closest[i], squared_distance(p.row(i), centre, p.dims));
    });
  }
  return centres;
}

// Nearest centre of points [begin, end) of `indices` (or of every point when indices is empty),
// written to nearest/distance at the same positions.
void assign_points(const problem& p, const std::vector<float>& centres, int64_t k,
                   std::span<const int64_t> indices, std::span<int32_t> nearest,
                   std::span<float> distance) {
  const int64_t count = indices.empty() ? p.n : static_cast<int64_t>(indices.size());
  parallel_ranges(count, k * p.dims, p.threads, [&](int64_t begin, int64_t end) {
    for (int64_t at = begin; at < end; ++at) {
      const float* x = p.row(indices.empty() ? at : indices[at]);
      int32_t best = 0;
      float best_distance = squared_distance(x, &centres[0], p.dims);
      for (int64_t c = 1; c < k; ++c) {
        const float d = squared_distance(x, &centres[c * p.dims], p.dims);
        if (d < best_distance) {
          best_distance = d;
          best = static_cast<int32_t>(c);
        }
      }
      nearest[at] = best;
      distance[at] = best_distance;
    }
  });
}

// Gives every empty cluster (in index order) the point farthest from its own centre, taken from a
// cluster of more than one point (ties: the lowest point index), and moves the empty centre onto
// it. Distances are then lowered to the new centre where it is nearer, so the next empty cluster
// takes the point farthest from all centres so far. Returns the number of clusters re-seeded;
// `sizes` is recomputed from the assignment; `distance` is only good for this function afterwards.
int64_t reseed_empty_clusters(const problem& p, std::vector<int32_t>& assignment,
                              std::vector<float>& distance, std::vector<float>& centres,
                              std::vector<int64_t>& sizes) {
  sizes.assign(static_cast<size_t>(p.k), 0);
  for (int32_t c : assignment) ++sizes[c];
  int64_t reseeded = 0;
  for (int64_t empty = 0; empty < p.k; ++empty) {
    if (sizes[empty] > 0) continue;
    int64_t farthest = -1;
    for (int64_t i = 0; i < p.n; ++i)
      if (sizes[assignment[i]] > 1 && (farthest < 0 || distance[i] > distance[farthest]))
        farthest = i;
    // n >= k guarantees a cluster of two or more points while one is empty.
    --sizes[assignment[farthest]];
    assignment[farthest] = static_cast<int32_t>(empty);
    sizes[empty] = 1;
    std::copy(p.row(farthest), p.row(farthest) + p.dims, centres.begin() + empty * p.dims);
    // The next empty cluster looks for the point farthest from the centres including this one:
    // with the old distances, several empty clusters would land in the same far-off region.
    const float* centre = &centres[empty * p.dims];
    parallel_ranges(p.n, p.dims, p.threads, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i)
        distance[i] = std::min(distance[i], squared_distance(p.row(i), centre, p.dims));
    });
    ++reseeded;
  }
  return reseeded;
}

// Weighted means of the clusters of `assignment` (every cluster non-empty), summed in double in
// point order.
std::vector<float> cluster_means(const problem& p, const std::vector<int32_t>& assignment,
                                 std::vector<double>& cluster_weights) {
  std::vector<double> sums(static_cast<size_t>(p.k * p.dims), 0.0);
  cluster_weights.assign(static_cast<size_t>(p.k), 0.0);
  for (int64_t i = 0; i < p.n; ++i) {
    const double w = p.weight(i);
    const float* x = p.row(i);
    double* sum = &sums[assignment[i] * p.dims];
    for (int64_t j = 0; j < p.dims; ++j) sum[j] += w * x[j];
    cluster_weights[assignment[i]] += w;
  }
  std::vector<float> means(sums.size());
  for (int64_t c = 0; c < p.k; ++c)
    for (int64_t j = 0; j < p.dims; ++j)
      means[c * p.dims + j] = static_cast<float>(sums[c * p.dims + j] / cluster_weights[c]);
  return means;
}

double total_shift(const std::vector<float>& before, const std::vector<float>& after) {
  double shift = 0;
  for (size_t i = 0; i < before.size(); ++i) {
    const double diff = static_cast<double>(after[i]) - before[i];
    shift += diff * diff;
  }
  return shift;
}

// The tolerance in squared distance: options.tolerance x the mean per-dimension (weighted)
// variance of the data.
double absolute_tolerance(const problem& p, double tolerance) {
  std::vector<double> mean(static_cast<size_t>(p.dims), 0.0), square(mean.size(), 0.0);
  double total = 0;
  for (int64_t i = 0; i < p.n; ++i) {
    const double w = p.weight(i);
    total += w;
    for (int64_t j = 0; j < p.dims; ++j) {
      mean[j] += w * p.row(i)[j];
      square[j] += w * p.row(i)[j] * p.row(i)[j];
    }
  }
  double variance = 0;
  for (int64_t j = 0; j < p.dims; ++j) {
    const double m = mean[j] / total;
    variance += std::max(0.0, square[j] / total - m * m);
  }
  return tolerance * variance / static_cast<double>(p.dims);
}

// The last step of both algorithms: assignment, empty clusters, means, sizes and inertia.
void finish(const problem& p, std::vector<int32_t>& assignment, std::vector<float>& distance,
            std::vector<float>& centres, kmeans_result& result) {
  result.reseeded += reseed_empty_clusters(p, assignment, distance, centres, result.sizes);
  result.centroids = cluster_means(p, assignment, result.cluster_weights);
  result.inertia = 0;
  for (int64_t i = 0; i < p.n; ++i)
    result.inertia +=
        p.weight(i) * squared_distance(p.row(i), &result.centroids[assignment[i] * p.dims], p.dims);
  result.assignment = std::move(assignment);
}

void run_lloyd(const problem& p, std::vector<float> centres, const kmeans_options& options,
               kmeans_result& result) {
  const double tolerance = absolute_tolerance(p, options.tolerance);
  std::vector<int32_t> assignment(static_cast<size_t>(p.n)), previous(static_cast<size_t>(p.n), -1);
  std::vector<float> distance(static_cast<size_t>(p.n));
  for (int64_t iteration = 0; iteration < options.max_iterations; ++iteration) {
    assign_points(p, centres, p.k, {}, assignment, distance);
    result.reseeded += reseed_empty_clusters(p, assignment, distance, centres, result.sizes);
    const bool changed = assignment != previous;
    auto means = cluster_means(p, assignment, result.cluster_weights);
    const double shift = total_shift(centres, means);
    centres = std::move(means);
    result.iterations = iteration + 1;
    if (options.after_iteration) options.after_iteration(result.iterations);
    if (!changed || shift <= tolerance) {
      result.converged = true;
      break;
    }
    previous = assignment;
  }
  // The centres are the means of the last assignment; finish() recomputes the same means, sizes
  // and the inertia (the assignment has no empty cluster any more).
  finish(p, assignment, distance, centres, result);
}

void run_minibatch(const problem& p, std::vector<float> centres, const kmeans_options& options,
                   uint64_t seed, kmeans_result& result) {
  const double tolerance = absolute_tolerance(p, options.tolerance);
  splitmix64 random(splitmix64::mix(seed ^ batch_stream));
  const int64_t batch = options.batch_size;
  std::vector<double> seen(static_cast<size_t>(p.k), 0.0);
  std::vector<int64_t> indices(static_cast<size_t>(batch));
  std::vector<int32_t> nearest(static_cast<size_t>(batch));
  std::vector<float> distance(static_cast<size_t>(batch));
  for (int64_t iteration = 0; iteration < options.max_iterations; ++iteration) {
    for (auto& index : indices) index = static_cast<int64_t>(random.bounded(static_cast<uint64_t>(p.n)));
    // Sculley's step: nearest centres for the whole batch first, then the gradient steps in
    // batch order, each centre with learning rate (point weight) / (weight it has seen).
    assign_points(p, centres, p.k, indices, nearest, distance);
    const auto before = centres;
    for (int64_t b = 0; b < batch; ++b) {
      const int32_t c = nearest[b];
      const double w = p.weight(indices[b]);
      seen[c] += w;
      const float rate = static_cast<float>(w / seen[c]);
      const float* x = p.row(indices[b]);
      float* centre = &centres[c * p.dims];
      for (int64_t j = 0; j < p.dims; ++j) centre[j] += rate * (x[j] - centre[j]);
    }
    result.iterations = iteration + 1;
    if (options.after_iteration) options.after_iteration(result.iterations);
    // Late batches move the centres little by construction (rates 1/count), so the tolerance
    // compares the move of one batch against the same scale as Lloyd's.
    if (iteration > 0 && total_shift(before, centres) <= tolerance) {
      result.converged = true;
      break;
    }
  }
  std::vector<int32_t> assignment(static_cast<size_t>(p.n));
  std::vector<float> all_distances(static_cast<size_t>(p.n));
  assign_points(p, centres, p.k, {}, assignment, all_distances);
  finish(p, assignment, all_distances, centres, result);
}

kmeans_result run(const feature_rows& points, std::span<const double> weights, bool weighted,
                  const kmeans_options& options) {
  validate(points, weights, weighted, options);
  const problem p{points.values.data(), points.rows, points.dims,
                  weighted ? weights : std::span<const double>{}, options.k, options.threads};
  kmeans_result result;
  result.k = p.k;
  result.dims = p.dims;
  auto algorithm = options.algorithm;
  if (algorithm == kmeans_algorithm::automatic)
    algorithm = p.n > options.minibatch_above ? kmeans_algorithm::minibatch : kmeans_algorithm::lloyd;
  result.algorithm = algorithm;
  auto centres = options.initial_centroids.empty() ? seed_centroids(p, options.seed)
                                                   : options.initial_centroids;
  if (algorithm == kmeans_algorithm::lloyd)
    run_lloyd(p, std::move(centres), options, result);
  else
    run_minibatch(p, std::move(centres), options, options.seed, result);
  return result;
}

}  // namespace

kmeans_result kmeans(const feature_rows& points, const kmeans_options& options) {
  return run(points, {}, false, options);
}

kmeans_result weighted_kmeans(const feature_rows& points, std::span<const double> weights,
                              const kmeans_options& options) {
  return run(points, weights, true, options);
}

std::vector<int32_t> nearest_centroids(const feature_rows& points, std::span<const float> centroids,
                                       int threads) {
  if (points.dims < 1) throw kmeans_error("k-means: feature rows need at least one dimension");
  if (static_cast<uint64_t>(points.rows) * static_cast<uint64_t>(points.dims) !=
      points.values.size())
    throw kmeans_error("k-means: " + std::to_string(points.rows) + " x " +
                       std::to_string(points.dims) + " feature rows need as many values, got " +
                       std::to_string(points.values.size()));
  if (centroids.empty() || centroids.size() % static_cast<size_t>(points.dims) != 0)
    throw kmeans_error("k-means: " + std::to_string(centroids.size()) +
                       " centroid values are not a whole number (> 0) of rows of " +
                       std::to_string(points.dims));
  if (threads < 0) throw kmeans_error("k-means: threads must be >= 0");
  const problem p{points.values.data(), points.rows, points.dims, {}, 0, threads};
  const std::vector<float> centres(centroids.begin(), centroids.end());
  std::vector<int32_t> nearest(static_cast<size_t>(points.rows));
  std::vector<float> distance(static_cast<size_t>(points.rows));
  assign_points(p, centres, static_cast<int64_t>(centroids.size()) / points.dims, {}, nearest,
                distance);
  return nearest;
}

}  // namespace ddactor
