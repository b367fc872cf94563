// data.micro_batch_size: the memory a training step needs and its throughput, with the batch
// in micro-batches against the whole batch at once, on the same model, batch and data. Each
// setting runs in a child process of its own (forked before LibTorch runs anything here), so
// that its peak resident memory is its own: the peak above the resident memory before its first
// step is mostly the activations kept for backward, which micro-batches cut. Also prints how far
// the micro-batched gradient is from the whole batch's (float rounding only).
//
//   ddactor_micro_batches_bench [--preset S/4] [--batch 64] [--micro 16,4] [--steps 4]
#include <torch/torch.h>

#include <CLI/CLI.hpp>

#include <spdlog/spdlog.h>

#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "app/torch_setup.hpp"
#include "config/config_loader.hpp"
#include "models/dataset_tensors.hpp"
#include "models/diffusion_trainer.hpp"
#include "models/model_config.hpp"
#include "runtime/data_order.hpp"
#include "runtime/run_data.hpp"

namespace {

using namespace ddactor;
using clock_type = std::chrono::steady_clock;

run_config bench_config(const std::string& preset, int batch, int micro) {
  return parse_run_config("[model]\npreset = \"" + preset + "\"\n[data]\nbatch_size = " +
                            std::to_string(batch) + "\nmicro_batch_size = " +
                            std::to_string(micro) + "\n[train]\nwarmup_steps = 0\n",
                          "bench.toml");
}

// A /proc/self/status field in kB (VmRSS, VmHWM).
double status_megabytes(const std::string& field) {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line))
    if (line.rfind(field + ":", 0) == 0)
      return std::stod(line.substr(field.size() + 1)) / 1024.0;
  return 0;
}

struct measured {
  double samples_per_second = 0;
  double peak_megabytes = 0;  // above the resident memory before the first step
  double gradient_difference = 0;  // max |g - g_whole| / max |g_whole|, on the first batch
};

// One setting, in this (child) process.
measured run_setting(const std::string& preset, int batch, int micro, int steps) {
  const auto config = bench_config(preset, batch, micro);
  const auto data = load_run_data(config);
  diffusion_trainer trainer(make_dit_options(config), make_trainer_settings(config));
  shuffled_order order(data.train->count, config.run.seed);
  data_cursor cursor;
  const auto first = batch_of(*data.train, order.next_batch(cursor, batch));
  measured out;
  const double before = status_megabytes("VmRSS");
  trainer.accumulate(first);
  out.peak_megabytes = status_megabytes("VmHWM") - before;
  {
    // The first batch's gradient against the whole batch's (a second trainer in the same state,
    // built after the peak was read).
    auto whole_config = config;
    whole_config.data.micro_batch_size = 0;
    diffusion_trainer whole(make_dit_options(whole_config), make_trainer_settings(whole_config));
    whole.accumulate(first);
    const auto& g = whole.parameters().gradients();
    out.gradient_difference = ((trainer.parameters().gradients() - g).abs().max() /
                               g.abs().max().clamp_min(1e-30))
                                .item<double>();
  }
  trainer.apply_step();
  const auto started = clock_type::now();
  for (int step = 0; step < steps; ++step)
    trainer.train_step(batch_of(*data.train, order.next_batch(cursor, batch)));
  out.samples_per_second =
    steps * batch / std::chrono::duration<double>(clock_type::now() - started).count();
  return out;
}

// Runs one setting in a child process; its result comes back through a pipe.
measured in_child(const std::string& preset, int batch, int micro, int steps) {
  std::fflush(nullptr);  // the child must not write out what the parent buffered
  int fds[2];
  if (pipe(fds) != 0)
    throw std::runtime_error("pipe failed");
  const pid_t child = fork();
  if (child == 0) {
    close(fds[0]);
    measured m = run_setting(preset, batch, micro, steps);
    const auto written = write(fds[1], &m, sizeof m);
    _exit(written == static_cast<ssize_t>(sizeof m) ? 0 : 1);
  }
  close(fds[1]);
  measured m;
  const auto got = read(fds[0], &m, sizeof m);
  close(fds[0]);
  int status = 0;
  waitpid(child, &status, 0);
  if (got != static_cast<ssize_t>(sizeof m) || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
    throw std::runtime_error("the run with micro-batches of " + std::to_string(micro) +
                             " failed");
  return m;
}

} // namespace

int main(int argc, char** argv) {
  use_passive_openmp_wait(argv);
  CLI::App app{"Peak memory and throughput of a training step in micro-batches against the "
               "whole batch at once (data.micro_batch_size)"};
  std::string preset = "S/4";
  int batch = 64, steps = 4;
  std::vector<int> micro{16, 4};
  app.add_option("--preset", preset, "DiT preset (S/4, B/2, ...)")->capture_default_str();
  app.add_option("--batch", batch, "batch size")->capture_default_str();
  app.add_option("--micro", micro, "micro-batch sizes to compare")->delimiter(',');
  app.add_option("--steps", steps, "timed steps per setting")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  spdlog::set_level(spdlog::level::warn);  // the data set's line would come once per setting
  const auto whole = in_child(preset, batch, 0, steps);
  std::printf("DiT-%s, batch %d, %d timed steps per setting, each in its own process\n",
              preset.c_str(), batch, steps);
  std::printf("%-16s %14s %10s %14s %10s %22s\n", "micro-batch", "peak MB", "vs whole",
              "samples/s", "vs whole", "gradient difference");
  std::printf("%-16s %14.1f %10.2f %14.1f %10.2f %22s\n", "whole batch", whole.peak_megabytes,
              1.0, whole.samples_per_second, 1.0, "-");
  for (int size : micro) {
    const auto m = in_child(preset, batch, size, steps);
    std::printf("%-16d %14.1f %10.2f %14.1f %10.2f %22.2e\n", size, m.peak_megabytes,
                m.peak_megabytes / whole.peak_megabytes, m.samples_per_second,
                m.samples_per_second / whole.samples_per_second, m.gradient_difference);
  }
  return 0;
}
