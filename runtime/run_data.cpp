// Loading a run's training and held-out images; see run_data.hpp.
#include "runtime/run_data.hpp"

#include <spdlog/spdlog.h>

#include <numeric>

#include "monitoring/ddactor_metrics.hpp"
#include "runtime/cluster_assignment.hpp"
#include "runtime/data_order.hpp"
#include "runtime/idx_dataset.hpp"
#include "runtime/image_folder_dataset.hpp"
#include "runtime/image_io.hpp"

namespace ddactor {

image_dataset resize_dataset(const image_dataset& data, int resolution, int channels) {
  if (data.height == resolution && data.width == resolution && data.channels == channels)
    return data;
  image_dataset out = data;
  out.height = out.width = resolution;
  out.channels = channels;
  out.pixels.clear();
  out.pixels.reserve(static_cast<size_t>(data.count) * channels * resolution * resolution);
  for (int64_t i = 0; i < data.count; ++i) {
    auto src = data.image(i);
    // image_dataset stores CHW; decoded_image is HWC.
    decoded_image img;
    img.width = data.width;
    img.height = data.height;
    img.channels = data.channels;
    img.pixels.resize(src.size());
    auto plane = static_cast<size_t>(data.width) * data.height;
    for (size_t p = 0; p < plane; ++p)
      for (int c = 0; c < data.channels; ++c)
        img.pixels[p * data.channels + c] = src[c * plane + p];
    auto fitted = fit_image(img, resolution, channels);
    out.pixels.insert(out.pixels.end(), fitted.begin(), fitted.end());
  }
  out.check_consistent();
  return out;
}

namespace {

// The run's assignment file, refused unless it was made for `loaded` with ddm.num_experts.
cluster_assignment read_matching_assignment(const run_config& config,
                                            const clustered_data& loaded) {
  auto path = config.assignments_path();
  auto clusters = read_cluster_assignment(path);
  check_assignment_matches(clusters, loaded, path);
  if (clusters.num_clusters != config.ddm.num_experts)
    throw std::runtime_error(path.string() + " holds " + std::to_string(clusters.num_clusters) +
                             " clusters, but ddm.num_experts is " +
                             std::to_string(config.ddm.num_experts) +
                             " (run `ddactor cluster` again, or fix the config)");
  return clusters;
}

} // namespace

std::shared_ptr<const sd_example_set> apply_ddm_split(
  const run_config& config, std::shared_ptr<const sd_example_set> examples) {
  if (config.ddm.expert < 0)
    return examples;
  const auto clusters =
    read_matching_assignment(config, describe_training_data(config, *examples));
  auto subset = std::make_shared<sd_example_set>();
  subset->buckets = examples->buckets;
  for (auto index : indices_of_cluster(clusters, config.ddm.expert))
    subset->examples.push_back(examples->examples[static_cast<size_t>(index)]);
  spdlog::info("DDM expert {}: {} of {} training images (cluster {} of {})", config.ddm.expert,
               subset->count(), examples->count(), config.ddm.expert, clusters.num_clusters);
  return subset;
}

void apply_ddm_split(const run_config& config, run_data& data) {
  bool expert = config.ddm.expert >= 0;
  bool router = config.run.mode == "router";
  if (!expert && !router)
    return;
  const auto clusters =
    read_matching_assignment(config, describe_training_data(config, *data.train));
  if (expert) {
    auto indices = indices_of_cluster(clusters, config.ddm.expert);
    auto subset = std::make_shared<image_dataset>(data.train->subset(indices));
    spdlog::info("DDM expert {}: {} of {} training images (cluster {} of {})", config.ddm.expert,
                 subset->count, data.train->count, config.ddm.expert, clusters.num_clusters);
    data.train = subset;
    return;
  }
  // The router learns p(cluster | x_t, t, class) on all images, each with its cluster.
  auto relabelled = std::make_shared<image_dataset>(*data.train);
  relabelled->clusters.assign(clusters.assignment.begin(), clusters.assignment.end());
  spdlog::info("DDM router: {} images labelled with their cluster (sizes:{})", relabelled->count,
               [&] {
                 std::string sizes;
                 for (auto size : clusters.sizes) {
                   sizes += ' ';
                   sizes += std::to_string(size);
                 }
                 return sizes;
               }());
  data.train = relabelled;
}

run_data load_run_data(const run_config& config) {
  const auto& d = config.data;
  run_data out;
  if (d.source == "fashion-mnist") {
    if (!std::filesystem::is_directory(d.path))
      throw std::runtime_error("Fashion-MNIST not found in " + d.path.string() +
                               " (install the Debian package dataset-fashion-mnist, or set "
                               "data.path)");
    auto train = load_fashion_mnist(d.path, dataset_split::train);
    auto test = load_fashion_mnist(d.path, dataset_split::test);
    out.train = std::make_shared<image_dataset>(resize_dataset(train, d.resolution, d.channels));
    out.holdout = std::make_shared<image_dataset>(resize_dataset(test, d.resolution, d.channels));
  } else {
    bool captions = config.model.conditioning == "caption";
    auto all = load_image_folder(d.path, d.resolution, d.channels, captions, out.skipped);
    if (out.skipped.total() > 0)
      spdlog::warn("{} files of {} skipped ({} unreadable, {} without caption, {} captions "
                   "without image, {} not images)",
                   out.skipped.total(), d.path.string(), out.skipped.unreadable,
                   out.skipped.missing_caption, out.skipped.missing_image,
                   out.skipped.wrong_format);
    auto& skipped = data_metrics(global_metrics()).skipped_files;
    skipped.with({"unreadable"}).inc(out.skipped.unreadable);
    skipped.with({"missing_caption"}).inc(out.skipped.missing_caption);
    skipped.with({"missing_image"}).inc(out.skipped.missing_image);
    skipped.with({"wrong_format"}).inc(out.skipped.wrong_format);
    auto train_idx = holdout_split(all.count, d.holdout_fraction, config.run.seed, false);
    auto hold_idx = holdout_split(all.count, d.holdout_fraction, config.run.seed, true);
    out.train = std::make_shared<image_dataset>(all.subset(train_idx));
    out.holdout = std::make_shared<image_dataset>(all.subset(hold_idx));
  }
  if (out.train->count == 0)
    throw std::runtime_error("no training images in " + d.path.string());
  apply_ddm_split(config, out);
  spdlog::info("data: {} training and {} held-out images ({}x{}x{}) from {}", out.train->count,
               out.holdout->count, out.train->channels, out.train->height, out.train->width,
               d.path.string());
  return out;
}

std::vector<std::string> class_label_names(const run_config& config, int64_t num_classes) {
  std::vector<std::string> names;
  for (int64_t c = 0; c < num_classes; ++c) {
    const bool known = config.data.source == "fashion-mnist" &&
                       c < static_cast<int64_t>(fashion_mnist_class_names.size());
    names.push_back(known ? std::string(fashion_mnist_class_names[static_cast<size_t>(c)])
                          : "class " + std::to_string(c));
  }
  return names;
}

std::vector<std::string> prompt_labels(const std::vector<std::string>& prompts) {
  std::vector<std::string> labels;
  for (const auto& prompt : prompts) labels.push_back(prompt.empty() ? "(no prompt)" : prompt);
  return labels;
}

} // namespace ddactor
