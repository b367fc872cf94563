// `ddactor cluster`: the data split of Decentralized Diffusion Models (McAllister et al. 2025).
// Loads the run's training images, computes a feature per image (models/feature_extractor; for
// a latent DiT, from the images' VAE latents: models/latent_features),
// clusters the features into ddm.fine_clusters with k-means, merges the fine clusters into
// ddm.num_experts coarse ones with k-means on their centroids weighted by their sizes, and writes
// the assignment file every expert shares (runtime/cluster_assignment; ddm.assignments, by default
// <root>/clusters.safetensors). With ddm.partition =
// "random" it writes a seeded, balanced random split in the same format instead (the ablation).
//
// Each image goes to the coarse cluster of its fine cluster, not to its nearest coarse centroid:
// the fine clusters are the units the paper consolidates, the recorded fine_to_coarse map then
// describes the partition exactly, and the coarse centroids are exactly the mean features of
// their images (the size-weighted mean of the fine means).
//
// Same config and seed, same file, byte for byte (on the same machine and thread count: k-means
// is independent of the thread count, LibTorch's matrix products may not be).
#include "app/commands.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include "app/sd_commands.hpp"
#include "app/stop_signal.hpp"
#include "models/feature_extractor.hpp"
#include "models/latent_features.hpp"
#include "runtime/cluster_assignment.hpp"
#include "runtime/data_order.hpp"
#include "runtime/kmeans.hpp"
#include "runtime/progress_meter.hpp"
#include "runtime/run_data.hpp"

namespace ddactor {

namespace {

// Images per forward pass of the feature extractor.
constexpr int64_t feature_batch_size = 256;
// Data sets larger than this use mini-batch k-means for the fine clusters: a Lloyd pass over 100k
// images x 64 clusters x 32 dims takes about 0.06 s on one core, so Lloyd stays cheap below.
constexpr int64_t minibatch_above = 100000;
// Streams of ddm.seed for the two k-means runs.
constexpr uint64_t fine_stream = 0x66696e652d6b6dULL;      // "fine-km"
constexpr uint64_t coarse_stream = 0x636f617273652dULL;    // "coarse-"

using clock_type = std::chrono::steady_clock;

double seconds_since(clock_type::time_point start) {
  return std::chrono::duration<double>(clock_type::now() - start).count();
}

// Progress shown with its ETA, ending the work with work_stopped on Ctrl-C or SIGTERM.
progress_callback stoppable_progress(std::string task, std::string unit) {
  return [show = show_progress(std::move(task), std::move(unit))](int64_t done, int64_t total) {
    if (stop_requested()) throw work_stopped();
    show(done, total);
  };
}

struct clustering_times {
  double features = 0;
  double kmeans = 0;
};

// Every training image's feature vector: the configured extractor's, on the run's images.
torch::Tensor image_features(const run_config& config, const image_dataset& train,
                             std::string& description) {
  const auto extractor = make_feature_extractor(config.ddm);
  description = extractor->description();
  spdlog::info("features of {} images: {}", train.count, description);
  return extractor->image_features(train, feature_batch_size,
                                   stoppable_progress("cluster: features", "images"));
}

// A latent DiT's images as pixels (resolution x resolution RGB, in the examples' order), for a
// TorchScript feature module: the examples made again without the latent cache.
image_dataset example_pixels(const run_config& config, sd_pipeline& pipeline, int64_t count) {
  auto options = latent_data_options(config, pipeline);
  options.cache = false;
  sd_data_report report;
  const auto examples = prepare_sd_examples(pipeline, options, report);
  if (examples.count() != count)
    throw std::runtime_error("the image folder changed while it was read (" +
                             std::to_string(count) + " images, then " +
                             std::to_string(examples.count()) + ")");
  image_dataset images;
  images.count = count;
  images.channels = 3;
  images.height = images.width = config.data.resolution;
  images.pixels.reserve(static_cast<size_t>(count * images.image_size()));
  for (const auto& example : examples.examples)
    images.pixels.insert(images.pixels.end(), example.pixels.begin(), example.pixels.end());
  images.check_consistent();
  return images;
}

// Fine k-means on the features (n x d), then weighted k-means of the fine centroids into K.
void cluster_features(const run_config& config, const torch::Tensor& features,
                      cluster_assignment& clusters, clustering_times& times) {
  const auto& ddm = config.ddm;
  const int64_t count = features.size(0);
  const int64_t dims = features.size(1);
  const std::span<const float> values(features.data_ptr<float>(),
                                      static_cast<size_t>(features.numel()));
  spdlog::info("features: {} x {} in {:.1f} s", count, dims, times.features);

  const auto started = clock_type::now();
  kmeans_options fine_options;
  fine_options.k = ddm.fine_clusters;
  fine_options.seed = splitmix64::mix(ddm.seed ^ fine_stream);
  fine_options.max_iterations = ddm.kmeans_iterations;
  fine_options.threads = config.run.threads;
  fine_options.batch_size = ddm.kmeans_batch;
  fine_options.minibatch_above = minibatch_above;
  // The iteration limit is the total: converging earlier ends the meter early.
  fine_options.after_iteration =
      [show = stoppable_progress("cluster: fine k-means", "iterations"),
       limit = ddm.kmeans_iterations](int64_t done) { show(done, limit); };
  const auto fine = kmeans({values, count, dims}, fine_options);
  spdlog::info("fine k-means: {} clusters, {} {} ({}), inertia {:.6g}, {} empty clusters re-seeded",
               fine.k, fine.iterations,
               fine.algorithm == kmeans_algorithm::lloyd ? "Lloyd iterations" : "mini-batches",
               fine.converged ? "converged" : "iteration limit", fine.inertia, fine.reseeded);

  const std::vector<double> weights(fine.sizes.begin(), fine.sizes.end());
  kmeans_options coarse_options;
  coarse_options.k = ddm.num_experts;
  coarse_options.seed = splitmix64::mix(ddm.seed ^ coarse_stream);
  coarse_options.algorithm = kmeans_algorithm::lloyd;
  coarse_options.max_iterations = ddm.kmeans_iterations;
  coarse_options.threads = config.run.threads;
  coarse_options.after_iteration = [](int64_t) {
    if (stop_requested()) throw work_stopped();
  };
  const auto coarse = weighted_kmeans({fine.centroids, fine.k, dims}, weights, coarse_options);
  times.kmeans = seconds_since(started);

  clusters.feature_dims = dims;
  clusters.fine_clusters = fine.k;
  clusters.fine_centroids = fine.centroids;
  clusters.fine_to_coarse = coarse.assignment;
  clusters.coarse_centroids = coarse.centroids;
  clusters.assignment.resize(fine.assignment.size());
  for (size_t i = 0; i < fine.assignment.size(); ++i)
    clusters.assignment[i] = coarse.assignment[fine.assignment[i]];
}

std::string percent(int64_t part, int64_t whole) {
  char text[16];
  std::snprintf(text, sizeof text, "%.1f%%", whole > 0 ? 100.0 * part / whole : 0.0);
  return text;
}

// The table a user reads to see what each expert will learn.
void print_table(const cluster_assignment& clusters, const std::vector<int64_t>& labels,
                 const std::vector<std::string>& class_names, const std::filesystem::path& file,
                 const clustering_times& times, double total_seconds) {
  const int64_t k = clusters.num_clusters;
  std::printf("cluster assignment  %s\n", file.c_str());
  std::printf("data                %lld %s images (%dx%dx%d), fingerprint %s\n",
              static_cast<long long>(clusters.data.count), clusters.data.source.c_str(),
              clusters.data.resolution, clusters.data.resolution, clusters.data.channels,
              clusters.data.fingerprint.c_str());
  if (clusters.partition == "random")
    std::printf("partition           random, %lld equal clusters, seed %llu\n",
                static_cast<long long>(k), static_cast<unsigned long long>(clusters.seed));
  else
    std::printf("partition           k-means: %lld fine clusters merged into %lld, seed %llu\n"
                "features            %s (%lld dims)\n",
                static_cast<long long>(clusters.fine_clusters), static_cast<long long>(k),
                static_cast<unsigned long long>(clusters.seed), clusters.features.c_str(),
                static_cast<long long>(clusters.feature_dims));

  const bool labelled = !labels.empty();
  int64_t classes = 0;
  for (int64_t label : labels) classes = std::max(classes, label + 1);
  std::vector<std::vector<int64_t>> histogram(static_cast<size_t>(k),
                                              std::vector<int64_t>(static_cast<size_t>(classes)));
  if (labelled)
    for (size_t i = 0; i < clusters.assignment.size(); ++i)
      ++histogram[clusters.assignment[i]][labels[i]];
  const auto class_name = [&](int64_t c) {
    return c < static_cast<int64_t>(class_names.size()) ? class_names[c]
                                                         : "class " + std::to_string(c);
  };

  std::printf("\n%7s %8s %7s  %s\n", "cluster", "images", "share",
              labelled ? "main classes (share of the cluster)" : "");
  for (int64_t c = 0; c < k; ++c) {
    std::string main_classes;
    if (labelled) {
      std::vector<int64_t> order(static_cast<size_t>(classes));
      for (int64_t j = 0; j < classes; ++j) order[j] = j;
      std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
        return histogram[c][a] > histogram[c][b];
      });
      // The classes that make up most of the cluster: up to four, each at least 5% of it.
      for (size_t j = 0; j < order.size() && j < 4; ++j) {
        const int64_t count = histogram[c][order[j]];
        if (count * 20 < clusters.sizes[c]) break;
        main_classes += (main_classes.empty() ? "" : ", ") + class_name(order[j]) + " " +
                        percent(count, clusters.sizes[c]);
      }
    }
    std::printf("%7lld %8lld %7s  %s\n", static_cast<long long>(c),
                static_cast<long long>(clusters.sizes[c]),
                percent(clusters.sizes[c], clusters.data.count).c_str(), main_classes.c_str());
  }

  if (labelled) {
    std::printf("\nimages per cluster (rows) and class (columns)\n%7s", "cluster");
    for (int64_t j = 0; j < classes; ++j) std::printf(" %6lld", static_cast<long long>(j));
    std::printf("\n");
    for (int64_t c = 0; c < k; ++c) {
      std::printf("%7lld", static_cast<long long>(c));
      for (int64_t j = 0; j < classes; ++j)
        std::printf(" %6lld", static_cast<long long>(histogram[c][j]));
      std::printf("\n");
    }
    std::string legend;
    for (int64_t j = 0; j < classes; ++j)
      legend += (j ? ", " : "") + std::to_string(j) + " " + class_name(j);
    std::printf("classes: %s\n", legend.c_str());
  }
  if (clusters.partition == "random")
    std::printf("\ntime                %.1f s\n", total_seconds);
  else
    std::printf("\ntime                %.1f s (features %.1f s, k-means %.1f s)\n", total_seconds,
                times.features, times.kmeans);
}

}  // namespace

int cluster_command(const run_config& config) {
  const auto started = clock_type::now();
  const auto& ddm = config.ddm;
  // What is clustered: the run's images, or for a latent DiT its examples' VAE latents (encoded
  // into the latent cache now, where training finds them).
  run_data data;
  std::shared_ptr<const sd_example_set> latent_examples;
  std::optional<sd_pipeline> pipeline;
  if (config.model.latent) {
    sd_pipeline_options options;
    options.unet = false;
    pipeline = load_sd_pipeline(config.model.pretrained, options);
    sd_data_report report;
    latent_examples = std::make_shared<const sd_example_set>(
        prepare_sd_examples(*pipeline, latent_data_options(config, *pipeline), report));
  } else {
    data = load_run_data(config);
  }
  const int64_t count = latent_examples ? latent_examples->count() : data.train->count;
  if (ddm.num_experts > count)
    throw std::invalid_argument("ddm.num_experts (" + std::to_string(ddm.num_experts) +
                                ") exceeds the number of training images (" +
                                std::to_string(count) + ")");
  if (ddm.partition != "random" && ddm.fine_clusters > count)
    throw std::invalid_argument("ddm.fine_clusters (" + std::to_string(ddm.fine_clusters) +
                                ") exceeds the number of training images (" +
                                std::to_string(count) + ")");

  cluster_assignment clusters;
  clusters.num_clusters = ddm.num_experts;
  clusters.data = latent_examples ? describe_training_data(config, *latent_examples)
                                  : describe_training_data(config, *data.train);
  clusters.seed = ddm.seed;
  clusters.partition = ddm.partition;
  clustering_times times;
  if (ddm.partition == "random") {
    clusters.assignment = random_partition(count, ddm.num_experts, ddm.seed);
  } else {
    const auto features_started = clock_type::now();
    torch::Tensor features;
    if (latent_examples && !ddm.features.empty()) {
      // A TorchScript module sees pixels: the same images as the examples, read again.
      features = image_features(config, example_pixels(config, *pipeline, latent_examples->count()),
                                clusters.features);
    } else if (latent_examples) {
      clusters.features = latent_pca_description(ddm.feature_dims);
      spdlog::info("features of {} images: {}", count, clusters.features);
      features = latent_pca_features(*latent_examples, *pipeline, ddm.feature_dims,
                                     stoppable_progress("cluster: features", "images"));
    } else {
      features = image_features(config, *data.train, clusters.features);
    }
    times.features = seconds_since(features_started);
    cluster_features(config, features, clusters, times);
  }
  clusters.sizes.assign(static_cast<size_t>(clusters.num_clusters), 0);
  for (int32_t c : clusters.assignment) ++clusters.sizes[c];

  const auto file = config.assignments_path();
  if (file.has_parent_path()) std::filesystem::create_directories(file.parent_path());
  if (std::filesystem::exists(file)) spdlog::warn("replacing {}", file.string());
  write_cluster_assignment(file, clusters);
  const std::vector<int64_t> no_labels;
  const std::vector<std::string> no_names;
  print_table(clusters, data.train ? data.train->labels : no_labels,
              data.train ? data.train->class_names : no_names, file, times,
              seconds_since(started));
  return 0;
}

}  // namespace ddactor
