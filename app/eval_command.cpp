// `ddactor eval`: the project's quality metric for a checkpoint; see models/quality_metric.hpp.
#include "app/commands.hpp"

#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdlib>
#include <fstream>

#include <nlohmann/json.hpp>

#include "app/inference_model.hpp"
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

} // namespace

int eval_command(const run_config& config, const eval_request& request) {
  if (config.data.source != "fashion-mnist" || config.data.resolution != 28 ||
      config.data.channels != 1)
    throw std::invalid_argument(
      "ddactor eval measures class-conditional Fashion-MNIST models at 28x28 (data.source = "
      "\"fashion-mnist\", data.resolution = 28); this run uses " +
      config.data.source + " at " + std::to_string(config.data.resolution));
  auto loaded = load_inference_model(config, request.checkpoint, request.raw_weights);
  if (loaded.model->options().conditioning != "class")
    throw std::invalid_argument("ddactor eval needs a class-conditioned model");
  const auto& e = config.eval;
  auto train = load_fashion_mnist(config.data.path, dataset_split::train);
  auto test = load_fashion_mnist(config.data.path, dataset_split::test);
  auto cache = e.cache_dir.empty() ? default_cache_dir() : e.cache_dir;
  auto classifier = load_or_train_feature_classifier(cache, train, test);

  generation_settings gen;
  gen.steps = e.steps;
  gen.sampler = parse_sampler(e.sampler);
  gen.cfg_scale = e.cfg_scale;
  gen.seed = e.seed;
  gen.batch_size = e.batch_size;
  auto labels = balanced_labels(e.num_samples, loaded.model->options().num_classes);
  spdlog::info("generating {} class-balanced samples from {} (step {}), {} {} steps, CFG {}",
               e.num_samples, loaded.checkpoint.string(), loaded.step, e.sampler, e.steps,
               e.cfg_scale);
  auto started = std::chrono::steady_clock::now();
  dit_condition cond;
  cond.labels = labels;
  auto images = generate_images(loaded.model, cond, gen, -1, [](int64_t done, int64_t total) {
    spdlog::info("  {}/{} samples", done, total);
  });
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
  std::ofstream(config.run_dir() / "eval.json") << j.dump(2) << "\n";
  return 0;
}

} // namespace ddactor
