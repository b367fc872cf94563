#pragma once
// k-means clustering of feature rows: the partition behind Decentralized Diffusion Models
// (McAllister et al. 2025), where every image's feature is clustered into many fine clusters that
// are then consolidated into K coarse ones, one per expert. Pure code: rows of floats in,
// centroids and an assignment out.
//
// What it does, in order:
//   - k-means++ seeding (Arthur & Vassilvitskii 2007): the first centre drawn in proportion to the
//     point weights, each next one in proportion to weight x squared distance to the nearest centre
//     chosen so far (D^2 sampling), from a splitmix64 stream of the seed;
//   - Lloyd iterations over all points, or mini-batch k-means (Sculley 2010, "Web-scale k-means
//     clustering": per batch, each sampled point pulls its nearest centre towards it with the
//     per-centre learning rate 1 / (weight that centre has seen so far)), then one full
//     assignment pass;
//   - empty clusters: a centre left without points takes the point farthest from its own centre
//     (among clusters of more than one point, so no other cluster empties; a second empty cluster
//     also counts the first one's new centre), and the centre moves onto it. With n >= k no
//     cluster of a result is ever empty, duplicate points included.
//
// The returned centroids are the (weighted) means of the returned assignment. Results depend only
// on the input, the options and the seed: the assignment pass runs on several threads, but every
// point's nearest centre is computed alone and every sum is taken in point order on one thread, so
// the thread count never changes a bit of the result. Ties go to the lowest centre index.
//
// Thread-safety: the functions share nothing; call them from any number of threads.

#include <cstdint>
#include <functional>
#include <span>
#include <stdexcept>
#include <vector>

namespace ddactor {

// Input k-means cannot work with (k > n, d = 0, NaN features, sizes that do not agree).
class kmeans_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A read-only n x d matrix of float features, row-major: row i is values[i*d, (i+1)*d).
struct feature_rows {
  std::span<const float> values;
  int64_t rows = 0;
  int64_t dims = 0;
};

enum class kmeans_algorithm {
  automatic,  // Lloyd up to minibatch_above points, mini-batch above that
  lloyd,
  minibatch,
};

struct kmeans_options {
  int64_t k = 8;
  uint64_t seed = 0;
  kmeans_algorithm algorithm = kmeans_algorithm::automatic;
  // Lloyd: the most iterations (assignment + update). Mini-batch: the most batches.
  int64_t max_iterations = 100;
  // Stop when the centres moved less than this, in total squared distance, relative to the mean
  // per-dimension variance of the data (the criterion scikit-learn uses): scale-free, so one
  // default serves pixels and embeddings. A Lloyd pass that changes no assignment also stops.
  double tolerance = 1e-4;
  // Points per mini-batch (sampled with replacement from the seed's stream).
  int64_t batch_size = 1024;
  // kmeans_algorithm::automatic switches to mini-batch above this many points.
  int64_t minibatch_above = 100000;
  // Worker threads for the assignment passes; 0: one per core. Never changes the result.
  int threads = 0;
  // k x d starting centres instead of k-means++ (warm starts; tests of bad initialisations).
  std::vector<float> initial_centroids;
  // Hears the number of Lloyd passes or mini-batches done after each one (progress; it may throw
  // to end the work there, e.g. work_stopped on Ctrl-C). Never changes the result.
  std::function<void(int64_t iterations_done)> after_iteration;
};

struct kmeans_result {
  int64_t k = 0;
  int64_t dims = 0;
  std::vector<float> centroids;        // k x d, row-major: the weighted means of each cluster
  std::vector<int32_t> assignment;     // n: the cluster of each point, in [0, k)
  std::vector<int64_t> sizes;          // k: points per cluster (sums to n)
  std::vector<double> cluster_weights; // k: weight per cluster (equals sizes when unweighted)
  double inertia = 0;                  // sum of weight x squared distance to the own centroid
  int64_t iterations = 0;              // Lloyd passes or mini-batches run
  bool converged = false;              // stopped by the tolerance, not by max_iterations
  int64_t reseeded = 0;                // empty clusters re-seeded along the way
  kmeans_algorithm algorithm = kmeans_algorithm::lloyd;  // what actually ran
};

// Clusters the rows of `points` into options.k clusters. Throws kmeans_error for k < 1 or k > n,
// d < 1, a values span whose size is not n*d, a non-finite feature, or options out of range.
kmeans_result kmeans(const feature_rows& points, const kmeans_options& options);

// The same with a positive, finite weight per point: a point of weight w counts as w copies of
// itself (with integer weights the result equals kmeans() on the expanded points, up to float
// rounding, when both start from the same centres). DDM consolidates fine centroids into coarse
// clusters with it, weighting each fine centroid by its cluster's size.
kmeans_result weighted_kmeans(const feature_rows& points, std::span<const double> weights,
                              const kmeans_options& options);

// The nearest of the k x d `centroids` for every row of `points` (ties: lowest index), on up to
// `threads` threads (0: one per core). Throws kmeans_error on mismatched sizes.
std::vector<int32_t> nearest_centroids(const feature_rows& points, std::span<const float> centroids,
                                       int threads = 0);

}  // namespace ddactor
