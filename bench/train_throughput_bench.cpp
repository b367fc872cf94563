// Training throughput of one ddactor peer (data loader, trainer, checkpointer and supervisor as
// actors, exactly as `ddactor train` runs them) against a bare LibTorch loop of the same model,
// batch size and thread count, measured in the same run and alternated (bare, actors, bare,
// actors, ...) so that a noisy machine hurts both alike. Prints samples/s and the ratio.
//
//   ddactor_train_bench [--preset S/4] [--batch 64] [--warmup 1] [--steps 4] [--repeats 2]
//                       [--threads 0]
#include <torch/torch.h>

#include <CLI/CLI.hpp>

#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdio>
#include <thread>

#include "actors/peer.hpp"
#include "app/torch_setup.hpp"
#include "config/config_loader.hpp"
#include "models/dataset_tensors.hpp"
#include "models/diffusion_trainer.hpp"
#include "models/flow_matching.hpp"
#include "models/model_config.hpp"
#include "monitoring/ddactor_metrics.hpp"
#include "runtime/actor_system_setup.hpp"
#include "runtime/actor_system_shutdown.hpp"
#include "runtime/data_order.hpp"
#include "runtime/run_data.hpp"

namespace {

using clock_type = std::chrono::steady_clock;
using namespace ddactor;

run_config bench_config(const std::string& preset, int batch, int64_t steps,
                        const std::filesystem::path& dir) {
  auto text = "[run]\nname = \"bench\"\ndir = \"" + dir.string() +
              "\"\n[model]\npreset = \"" + preset + "\"\n[data]\nbatch_size = " +
              std::to_string(batch) + "\n[train]\nsteps = " + std::to_string(steps) +
              "\nwarmup_steps = 0\nlog_every = 1000000\ncheckpoint_every = 1000000\n"
              "sample_every = 0\n[sample]\nsteps = 1\nper_class = 1\n";
  return parse_run_config(text, "bench.toml");
}

// The same training arithmetic (diffusion_trainer: DiT, flow matching, flat AdamW, EMA) in a
// plain loop on one thread with batches made inline: what the actor runtime adds is the only
// difference to the peer below.
double bare_loop_samples_per_second(const run_config& config, const image_dataset& data,
                                    int warmup, int steps) {
  diffusion_trainer trainer(make_dit_options(config), make_trainer_settings(config));
  shuffled_order order(data.count, config.run.seed);
  data_cursor cursor;
  clock_type::time_point started;
  for (int step = 0; step < warmup + steps; ++step) {
    if (step == warmup)
      started = clock_type::now();
    trainer.train_step(batch_of(data, order.next_batch(cursor, config.data.batch_size)));
  }
  double seconds = std::chrono::duration<double>(clock_type::now() - started).count();
  return static_cast<double>(steps * config.data.batch_size) / seconds;
}

// For reference only: the loop most LibTorch users would write first, with
// torch::optim::AdamW over per-parameter tensors (slower here: Debian's CPU LibTorch runs small
// elementwise kernels slowly, which the flat optimizer above avoids).
double naive_loop_samples_per_second(const run_config& config, const torch::Tensor& images,
                                     const torch::Tensor& labels, int warmup, int steps) {
  torch::manual_seed(0);
  dit model(make_dit_options(config));
  torch::optim::AdamW optimizer(model->parameters(),
                                torch::optim::AdamWOptions(config.train.lr).weight_decay(0));
  int64_t batch = config.data.batch_size;
  clock_type::time_point started;
  for (int step = 0; step < warmup + steps; ++step) {
    if (step == warmup)
      started = clock_type::now();
    auto idx = torch::randint(images.size(0), {batch}, torch::kInt64);
    auto x0 = images.index_select(0, idx);
    dit_condition cond;
    cond.labels = labels.index_select(0, idx);
    auto noise = torch::randn_like(x0);
    auto t = sample_logit_normal_t(batch, 0.0, 1.0);
    optimizer.zero_grad();
    flow_matching_loss(model->forward(interpolate_flow(x0, noise, t), t, cond), x0, noise)
      .backward();
    optimizer.step();
  }
  double seconds = std::chrono::duration<double>(clock_type::now() - started).count();
  return static_cast<double>(steps * batch) / seconds;
}

// A real peer; the window between step `warmup` and step `warmup + steps` is timed by watching
// its step counter, so start-up and the final checkpoint are not counted.
double actor_samples_per_second(const std::string& preset, int batch, int warmup, int steps,
                                const run_data& data) {
  auto dir = std::filesystem::temp_directory_path() / "ddactor_train_bench";
  std::filesystem::remove_all(dir);
  auto config = bench_config(preset, batch, warmup + steps, dir);
  auto& counter = training_metrics(global_metrics()).steps;
  double base = counter.value();
  ddactor_system_config system_config({}, /*with_network=*/false);
  caf::actor_system system{system_config};
  detached_actor_guard guard{system, std::chrono::seconds(30), shutdown_failure_exit_code};
  peer_options options;
  options.config = config;
  options.train_data = data.train;
  auto peer = spawn_peer(system, options);
  clock_type::time_point started, finished;
  while (counter.value() - base < warmup)
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  started = clock_type::now();
  while (counter.value() - base < warmup + steps)
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  finished = clock_type::now();
  caf::scoped_actor self{system};
  self->monitor(peer);
  self->receive([](const caf::down_msg&) {});
  std::filesystem::remove_all(dir);
  return static_cast<double>(steps * batch) /
         std::chrono::duration<double>(finished - started).count();
}

} // namespace

int main(int argc, char** argv) {
  use_passive_openmp_wait(argv);
  keep_freed_memory();
  CLI::App app{"Training throughput: ddactor's actor runtime against a bare LibTorch loop"};
  std::string preset = "S/4";
  int batch = 64, warmup = 1, steps = 4, repeats = 2, threads = 0;
  bool naive = false;
  app.add_option("--preset", preset, "DiT preset (S/4, B/2, ...)")->capture_default_str();
  app.add_option("--batch", batch, "batch size")->capture_default_str();
  app.add_option("--warmup", warmup, "untimed steps first")->capture_default_str();
  app.add_option("--steps", steps, "timed steps")->capture_default_str();
  app.add_option("--repeats", repeats, "alternations of bare and actor runs")
    ->capture_default_str();
  app.add_option("--threads", threads, "LibTorch threads (0: all cores)")->capture_default_str();
  app.add_flag("--naive", naive, "also time a torch::optim::AdamW loop, for reference");
  CLI11_PARSE(app, argc, argv);
  spdlog::set_level(spdlog::level::warn);
  int used_threads = configure_torch_threads(threads);

  auto config = bench_config(preset, batch, 1, "/tmp/unused");
  auto data = load_run_data(config);
  std::printf("DiT-%s at %dx%d, batch %d, %d LibTorch threads, %d timed steps after %d warm-up\n",
              preset.c_str(), config.data.resolution, config.data.resolution, batch, used_threads,
              steps, warmup);
  double bare_total = 0, actor_total = 0;
  for (int r = 0; r < repeats; ++r) {
    // On its own thread, like the peer's trainer: on the main thread, OpenBLAS's pool and
    // LibTorch's OpenMP team contend for the cores (measured 40% slower here).
    double bare = 0;
    std::thread([&] { bare = bare_loop_samples_per_second(config, *data.train, warmup, steps); })
      .join();
    double actors = actor_samples_per_second(preset, batch, warmup, steps, data);
    std::printf("  run %d: bare LibTorch loop %8.2f samples/s | ddactor peer %8.2f samples/s\n",
                r + 1, bare, actors);
    std::fflush(stdout);
    bare_total += bare;
    actor_total += actors;
  }
  std::printf("bare LibTorch loop : %.2f samples/s\n", bare_total / repeats);
  std::printf("ddactor (actors)   : %.2f samples/s\n", actor_total / repeats);
  std::printf("ratio ddactor/bare : %.3f  (target >= 0.95)\n", actor_total / bare_total);
  if (naive) {
    auto images = dataset_images(*data.train);
    auto labels = torch::tensor(data.train->labels, torch::kInt64);
    std::printf("reference: torch::optim::AdamW loop %.2f samples/s\n",
                naive_loop_samples_per_second(config, images, labels, warmup, steps));
  }
  return 0;
}
