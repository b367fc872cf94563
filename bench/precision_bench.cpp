// ddactor_precision_bench: what train.precision = "bf16" buys and costs on this machine. Trains
// the quickstart DiT (the staleness bench's config) in one process for --steps steps of --batch,
// once per precision, same data order and noise stream, and prints for each: training samples/s
// (steps only, data already in memory) and the validation loss of the raw weights at equal
// samples (models/validation_loss), with bf16's ratios to fp32 measured in the same run. On CPUs
// without bf16 instructions (AVX512-BF16, AMX) LibTorch emulates bf16 and it is slower; the
// figure that matters there is the loss ratio (aim: at most 1.02).
//
//   ddactor_precision_bench [--steps 150] [--batch 128] [--threads 0] [--validation-images 2000]
//       [--precisions fp32,bf16]
#include <torch/torch.h>

#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "app/torch_setup.hpp"
#include "config/config_loader.hpp"
#include "models/diffusion_trainer.hpp"
#include "models/model_config.hpp"
#include "models/validation_loss.hpp"
#include "runtime/data_order.hpp"
#include "runtime/image_dataset.hpp"
#include "runtime/run_data.hpp"

namespace {

using namespace ddactor;

struct settings {
  int64_t steps = 150;
  int batch = 128;
  int threads = 0;
  int64_t validation_images = 2000;
  std::vector<std::string> precisions{"fp32", "bf16"};
};

run_config bench_config(const std::string& precision) {
  return parse_run_config(
    "[run]\nname = \"precision-bench\"\n[data]\nsource = \"fashion-mnist\"\n"
    "[model]\npreset = \"custom\"\nhidden_size = 128\ndepth = 4\nnum_heads = 4\npatch_size = 4\n"
    "[train]\nlr = 0.0005\nwarmup_steps = 15\nema_decay = 0.999\nprecision = \"" +
      precision + "\"\n",
    "precision-bench.toml");
}

struct outcome {
  std::string precision;
  double samples_per_second = 0;
  double validation_loss = 0;
};

outcome train_and_score(const settings& s, const run_data& data, const std::string& precision) {
  const auto config = bench_config(precision);
  diffusion_trainer trainer(make_dit_options(config), make_trainer_settings(config));
  shuffled_order order(data.train->count, config.run.seed);
  data_cursor cursor;
  std::vector<training_batch> batches;
  for (int64_t step = 0; step < s.steps; ++step)
    batches.push_back(batch_of(*data.train, order.next_batch(cursor, s.batch)));
  const auto started = std::chrono::steady_clock::now();
  for (const auto& batch : batches)
    trainer.train_step(batch);
  const double seconds =
    std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  validation_loss_options o;
  o.images = s.validation_images;
  return {precision, static_cast<double>(s.steps * s.batch) / seconds,
          validation_loss(trainer.model(), *data.holdout, o)};
}

}  // namespace

int main(int argc, char** argv) {
  settings s;
  CLI::App app{"Training throughput and validation loss in bf16 autocast against fp32"};
  app.add_option("--steps", s.steps, "optimizer steps")->capture_default_str();
  app.add_option("--batch", s.batch, "samples per step")->capture_default_str();
  app.add_option("--threads", s.threads, "LibTorch threads (0: every core)")
    ->capture_default_str();
  app.add_option("--validation-images", s.validation_images, "first N test images")
    ->capture_default_str();
  app.add_option("--precisions", s.precisions, "fp32, bf16")->delimiter(',');
  CLI11_PARSE(app, argc, argv);
  const int threads = configure_torch_threads(s.threads);
  const auto data = load_run_data(bench_config("fp32"));
  std::printf("quickstart DiT, %lld steps of %d on %d threads; validation loss on %lld test "
              "images\n",
              static_cast<long long>(s.steps), s.batch, threads,
              static_cast<long long>(s.validation_images));
  std::fflush(stdout);
  std::vector<outcome> results;
  // On a worker thread: on the main thread OpenBLAS and OpenMP contend (torch_setup.hpp).
  run_on_worker_thread([&] {
    for (const auto& precision : s.precisions) {
      results.push_back(train_and_score(s, data, precision));
      std::printf("  %-5s %8.1f samples/s  validation loss %.5f\n", precision.c_str(),
                  results.back().samples_per_second, results.back().validation_loss);
      std::fflush(stdout);
    }
  });
  if (results.size() >= 2 && results.front().precision == "fp32")
    for (size_t i = 1; i < results.size(); ++i)
      std::printf("%s / fp32: throughput %.3f, validation loss %.4f (aim: at most 1.02)\n",
                  results[i].precision.c_str(),
                  results[i].samples_per_second / results.front().samples_per_second,
                  results[i].validation_loss / results.front().validation_loss);
  return 0;
}
