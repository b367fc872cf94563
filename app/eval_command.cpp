// `ddactor eval`: the project's quality metric for a checkpoint; see models/quality_metric.hpp.
#include "app/commands.hpp"

#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdlib>
#include <fstream>

#include <nlohmann/json.hpp>

#include "app/ddm_models.hpp"
#include "app/inference_model.hpp"
#include "app/stop_signal.hpp"
#include "models/device_transfer.hpp"
#include "models/ensemble.hpp"
#include "runtime/cluster_assignment.hpp"
#include "runtime/run_data.hpp"
#include "models/image_generation.hpp"
#include "models/quality_metric.hpp"
#include "runtime/idx_dataset.hpp"

namespace ddactor {

namespace {

std::filesystem::path default_cache_dir() {
  if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg != nullptr && *xdg != '\0')
    return std::filesystem::path(xdg) / "ddactor";
  if (const char* home = std::getenv("HOME"); home != nullptr && *home != '\0')
    return std::filesystem::path(home) / ".cache" / "ddactor";
  return std::filesystem::temp_directory_path() / "ddactor-cache";
}

// The "oracle cluster" of each class: the cluster holding most training images of that class.
std::vector<int64_t> class_to_cluster(const run_config& config, const image_dataset& train,
                                      int64_t num_classes, int64_t num_clusters) {
  auto path = config.assignments_path();
  auto clusters = read_cluster_assignment(path);
  check_assignment_matches(clusters, describe_training_data(config, train), path);
  std::vector<std::vector<int64_t>> counts(static_cast<size_t>(num_classes),
                                           std::vector<int64_t>(num_clusters, 0));
  for (size_t i = 0; i < clusters.assignment.size(); ++i)
    ++counts[static_cast<size_t>(train.labels[i])][static_cast<size_t>(clusters.assignment[i])];
  std::vector<int64_t> out;
  for (const auto& row : counts)
    out.push_back(std::max_element(row.begin(), row.end()) - row.begin());
  return out;
}

} // namespace

int eval_command(const run_config& config, const eval_request& request) {
  if (config.data.source != "fashion-mnist" || config.data.resolution != 28 ||
      config.data.channels != 1)
    throw std::invalid_argument(
      "ddactor eval measures class-conditional Fashion-MNIST models at 28x28 (data.source = "
      "\"fashion-mnist\", data.resolution = 28); this run uses " +
      config.data.source + " at " + std::to_string(config.data.resolution));
  inference_model loaded;
  ddm_models ddm;
  if (request.ensemble.empty()) {
    loaded = load_inference_model(config, request.checkpoint, request.raw_weights);
  } else {
    ddm = load_ddm_models(config);
    loaded.model = ddm.experts.front();
    loaded.checkpoint = config.ddm_root() / ("ensemble-" + request.ensemble);
  }
  if (loaded.model->options().conditioning != "class")
    throw std::invalid_argument("ddactor eval needs a class-conditioned model");
  const auto& e = config.eval;
  auto train = load_fashion_mnist(config.data.path, dataset_split::train);
  auto test = load_fashion_mnist(config.data.path, dataset_split::test);
  auto cache = e.cache_dir.empty() ? default_cache_dir() : e.cache_dir;
  classifier_training_options training;
  training.progress = show_progress("eval: training the feature classifier", "batches");
  training.stop_requested = stop_requested;
  auto classifier = load_or_train_feature_classifier(cache, train, test, training);

  // Generation on the run's (first) device; the classifier scores on the host.
  generation_settings gen;
  gen.device = parse_training_device(config.run.device_of_rank(0));
  loaded.model->to(gen.device);
  if (ddm.routing) {
    ddm.routing->to(gen.device);
    for (auto& expert : ddm.experts)
      expert->to(gen.device);
  }
  gen.steps = e.steps;
  gen.sampler = parse_sampler(e.sampler);
  gen.cfg_scale = e.cfg_scale;
  gen.seed = e.seed;
  gen.batch_size = e.batch_size;
  gen.stop_requested = stop_requested;
  auto labels = balanced_labels(e.num_samples, loaded.model->options().num_classes);
  spdlog::info("generating {} class-balanced samples from {} (step {}), {} {} steps, CFG {}",
               e.num_samples, loaded.checkpoint.string(), loaded.step, e.sampler, e.steps,
               e.cfg_scale);
  auto started = std::chrono::steady_clock::now();
  dit_condition cond;
  cond.labels = labels;
  auto progress = show_progress("eval: generating", "steps");
  torch::Tensor images;
  if (request.ensemble.empty()) {
    images = generate_images(loaded.model, cond, gen, -1, progress);
  } else {
    std::vector<expert_function> experts;
    for (auto& expert : ddm.experts)
      experts.push_back(local_expert(expert, gen.cfg_scale));
    ensemble_options options;
    options.top_k = request.top_k;
    std::vector<int64_t> oracle;
    if (request.ensemble == "oracle") {
      options.strategy = routing_strategy::fixed;
      oracle = class_to_cluster(config, train, loaded.model->options().num_classes,
                                static_cast<int64_t>(ddm.experts.size()));
    } else {
      options.strategy = parse_routing(request.ensemble);
    }
    auto make_field = [&](const dit_condition& part, int64_t rows) {
      auto o = options;
      if (!oracle.empty()) {
        o.fixed_weights = torch::zeros({rows, static_cast<int64_t>(ddm.experts.size())});
        for (int64_t i = 0; i < rows; ++i)
          o.fixed_weights[i][oracle[static_cast<size_t>(part.labels[i].item<int64_t>())]] = 1.0;
      }
      return ensemble_velocity(ddm.routing, experts, part, o);
    };
    images = generate_with_field(make_field, {1, 28}, cond, gen, -1, progress);
  }
  double seconds =
    std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  auto report = score_generated_images(classifier, images, labels, test, train);

  std::printf("checkpoint        %s (step %lld)\n", loaded.checkpoint.c_str(),
              static_cast<long long>(loaded.step));
  std::printf("frechet_distance  %.3f   (%lld samples vs %lld test images, classifier features)\n",
              report.frechet_distance, static_cast<long long>(report.samples),
              static_cast<long long>(report.reference_images));
  std::printf("real_data_floor   %.3f   (%lld real training images vs the same reference)\n",
              report.real_data_floor, static_cast<long long>(report.samples));
  std::printf("class_accuracy    %.2f%%  (classifier's agreement with the requested class)\n",
              100.0 * report.class_accuracy);
  std::printf("generation_time   %.1f s (%s, %d steps, CFG %.2f)\n", seconds, e.sampler.c_str(),
              e.steps, e.cfg_scale);
  nlohmann::json j{{"checkpoint", loaded.checkpoint.string()},
                   {"ensemble", request.ensemble},
                   {"step", loaded.step},
                   {"frechet_distance", report.frechet_distance},
                   {"real_data_floor", report.real_data_floor},
                   {"class_accuracy", report.class_accuracy},
                   {"samples", report.samples},
                   {"reference_images", report.reference_images},
                   {"sampler", e.sampler},
                   {"steps", e.steps},
                   {"cfg_scale", e.cfg_scale},
                   {"seed", e.seed}};
  auto json_name = request.ensemble.empty() ? std::string("eval.json")
                                            : "eval-ensemble-" + request.ensemble + ".json";
  std::ofstream((request.ensemble.empty() ? config.run_dir() : config.ddm_root()) / json_name)
    << j.dump(2) << "\n";
  return 0;
}

} // namespace ddactor
