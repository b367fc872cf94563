// What instrumentation costs training: the throughput of one ddactor peer (all its actors, as
// `ddactor train` runs them) on the quickstart-sized model with metrics on -- every family
// registered, updated by the actors, served on /metrics and scraped by a client the way
// Prometheus does -- against metrics off (`global_metrics().set_enabled(false)`, what
// `monitoring.enabled = false` does: every update is one relaxed load, and nobody scrapes).
//
// Both arms are measured in the same run of the same peer: the switch flips every few steps
// (on, off, off, on, on, off, ...: a slow drift of a shared machine weighs on both arms alike),
// and each step counts for the arm it ran in. Steps are timed from the trainer's progress log
// line ("step N/M"), not from a metric, so that both arms are timed the same way; the switch
// flips when that line is logged, between two steps.
//
//   ddactor_metrics_overhead_bench [--warmup 3] [--segment 4] [--segments 12] [--runs 1]
//                                  [--threads 0] [--scrape-interval 1.0]
#include <torch/torch.h>

#include <CLI/CLI.hpp>
#include <httplib.h>
#include <spdlog/sinks/base_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <map>
#include <mutex>
#include <thread>

#include "actors/peer.hpp"
#include "app/torch_setup.hpp"
#include "config/config_loader.hpp"
#include "monitoring/ddactor_metrics.hpp"
#include "monitoring/metrics_http_server.hpp"
#include "monitoring/peer_health.hpp"
#include "monitoring/prometheus_exposition.hpp"
#include "runtime/actor_system_setup.hpp"
#include "runtime/actor_system_shutdown.hpp"
#include "runtime/run_data.hpp"

namespace {

using clock_type = std::chrono::steady_clock;
using namespace ddactor;

// config/quickstart.toml's model and batch (1.3M-parameter DiT, patch 4, batch 128); a progress
// line every step; no checkpoints or samples inside the timed window.
run_config bench_config(int64_t steps, const std::filesystem::path& dir) {
  auto text = "[run]\nname = \"metrics-bench\"\ndir = \"" + dir.string() +
              "\"\n[data]\nbatch_size = 128\n"
              "[model]\npreset = \"custom\"\nhidden_size = 128\ndepth = 4\nnum_heads = 4\n"
              "patch_size = 4\n[train]\nsteps = " +
              std::to_string(steps) +
              "\nwarmup_steps = 0\nlog_every = 1\ncheckpoint_every = 1000000\n"
              "sample_every = 0\n[sample]\nsteps = 1\nper_class = 1\n";
  return parse_run_config(text, "metrics-bench.toml");
}

// Metrics on or off for timed step `index` (1-based): segments of `segment` steps in the order
// on, off, off, on, repeated.
bool metrics_on_for(int64_t index, int segment) {
  auto j = (index - 1) / segment;
  return j % 4 == 0 || j % 4 == 3;
}

// Records when the trainer logged "step N/...", and flips the metrics switch for the next step.
class step_clock_sink final : public spdlog::sinks::base_sink<std::mutex> {
 public:
  step_clock_sink(int warmup, int segment, int64_t last_step)
    : warmup_(warmup), segment_(segment), last_step_(last_step) {}

  void clear() {
    std::lock_guard<std::mutex> lock(times_mutex_);
    times_.clear();
  }
  std::map<int64_t, clock_type::time_point> times() const {
    std::lock_guard<std::mutex> lock(times_mutex_);
    return times_;
  }

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    auto now = clock_type::now();
    std::string_view text(msg.payload.data(), msg.payload.size());
    if (!text.starts_with("step "))
      return;
    int64_t step = 0;
    for (size_t i = 5; i < text.size() && text[i] >= '0' && text[i] <= '9'; ++i)
      step = step * 10 + (text[i] - '0');
    // Logged on the trainer's thread right after step `step`: the next step runs in the arm
    // set here.
    if (step >= warmup_ && step < last_step_)
      global_metrics().set_enabled(metrics_on_for(step + 1 - warmup_, segment_));
    std::lock_guard<std::mutex> lock(times_mutex_);
    times_.emplace(step, now);
  }
  void flush_() override {}

 private:
  const int warmup_;
  const int segment_;
  const int64_t last_step_;
  mutable std::mutex times_mutex_;
  std::map<int64_t, clock_type::time_point> times_;
};

// GET /metrics every `interval` while metrics are on, like a Prometheus server would.
class scraper {
 public:
  scraper(uint16_t port, std::chrono::milliseconds interval)
    : thread_([this, port, interval] { run(port, interval); }) {}
  ~scraper() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      done_ = true;
    }
    wake_.notify_all();
    thread_.join();
  }
  int scrapes() const { return scrapes_.load(); }

 private:
  void run(uint16_t port, std::chrono::milliseconds interval) {
    httplib::Client client("127.0.0.1", port);
    std::unique_lock<std::mutex> lock(mutex_);
    while (!wake_.wait_for(lock, interval, [this] { return done_; })) {
      lock.unlock();
      if (global_metrics().enabled())
        if (auto response = client.Get("/metrics"); response && response->status == 200)
          ++scrapes_;
      lock.lock();
    }
  }

  std::mutex mutex_;
  std::condition_variable wake_;
  bool done_ = false;
  std::atomic<int> scrapes_{0};
  std::thread thread_;
};

struct arm_totals {
  double seconds = 0;
  int64_t steps = 0;
  std::vector<double> step_seconds;

  // Robust to the steps that a busy machine preempted.
  double median_step_seconds() const {
    auto sorted = step_seconds;
    std::sort(sorted.begin(), sorted.end());
    return sorted.empty() ? 0.0 : sorted[sorted.size() / 2];
  }
};

// CPU time of rendering the whole registry once, what each scrape costs the peer.
double render_seconds(int repetitions) {
  auto started = clock_type::now();
  size_t bytes = 0;
  for (int i = 0; i < repetitions; ++i)
    bytes += render_prometheus_text(global_metrics()).size();
  if (bytes == 0)
    std::fprintf(stderr, "empty registry\n");
  return std::chrono::duration<double>(clock_type::now() - started).count() / repetitions;
}

// One peer from start to finish; adds each timed step's duration to its arm.
void peer_run(const run_config& config, double scrape_interval, int warmup, int segment,
              const run_data& data, step_clock_sink& clock, arm_totals& on, arm_totals& off,
              int& scrapes) {
  std::filesystem::remove_all(config.run_dir());
  global_metrics().set_enabled(true);
  std::unique_ptr<metrics_http_server> server;
  std::unique_ptr<scraper> scraping;
  if (scrape_interval > 0) {
    server = std::make_unique<metrics_http_server>(
      global_metrics(), [] { return peer_health::global().report(); });
    server->start("127.0.0.1", 0);
    scraping = std::make_unique<scraper>(
      server->port(), std::chrono::milliseconds(static_cast<int64_t>(scrape_interval * 1000)));
  }
  clock.clear();
  {
    ddactor_system_config system_config({}, /*with_network=*/false);
    caf::actor_system system{system_config};
    detached_actor_guard guard{system, std::chrono::seconds(30), shutdown_failure_exit_code};
    peer_options options;
    options.config = config;
    options.train_data = data.train;
    auto peer = spawn_peer(system, options);
    caf::scoped_actor self{system};
    self->monitor(peer);
    self->receive([](const caf::down_msg&) {});
  }
  if (scraping)
    scrapes += scraping->scrapes();
  scraping.reset();
  server.reset();
  global_metrics().set_enabled(true);
  std::filesystem::remove_all(config.run_dir());
  auto times = clock.times();
  for (int64_t step = warmup + 1; step <= config.train.steps; ++step) {
    auto before = times.find(step - 1), after = times.find(step);
    if (before == times.end() || after == times.end()) {
      std::fprintf(stderr, "the peer did not log steps %ld and %ld\n", static_cast<long>(step - 1),
                   static_cast<long>(step));
      std::exit(1);
    }
    auto& arm = metrics_on_for(step - warmup, segment) ? on : off;
    double seconds = std::chrono::duration<double>(after->second - before->second).count();
    arm.seconds += seconds;
    arm.step_seconds.push_back(seconds);
    ++arm.steps;
  }
}

} // namespace

int main(int argc, char** argv) {
  use_passive_openmp_wait(argv);
  keep_freed_memory();
  CLI::App app{"Training throughput with metrics on (served and scraped) against metrics off"};
  int warmup = 3, segment = 4, segments = 12, runs = 1, threads = 0;
  double scrape_interval = 1.0;
  app.add_option("--warmup", warmup, "untimed steps first")->capture_default_str();
  app.add_option("--segment", segment, "steps between flips of the switch")->capture_default_str();
  app.add_option("--segments", segments, "timed segments per run (half on, half off; a multiple "
                                         "of 4 keeps the order balanced)")
    ->capture_default_str();
  app.add_option("--runs", runs, "peer runs")->capture_default_str();
  app.add_option("--threads", threads, "LibTorch threads (0: all cores)")->capture_default_str();
  app.add_option("--scrape-interval", scrape_interval,
                 "seconds between scrapes of /metrics while metrics are on (0: no endpoint)")
    ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  if (warmup < 1 || segment < 1 || segments < 2 || runs < 1) {
    std::fprintf(stderr, "--warmup, --segment and --runs must be >= 1, --segments >= 2\n");
    return 2;
  }

  auto dir = std::filesystem::temp_directory_path() / "ddactor_metrics_overhead_bench";
  auto config = bench_config(warmup + static_cast<int64_t>(segment) * segments, dir);
  auto clock = std::make_shared<step_clock_sink>(warmup, segment, config.train.steps);
  auto warnings = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
  warnings->set_level(spdlog::level::warn);
  auto logger = std::make_shared<spdlog::logger>("bench", spdlog::sinks_init_list{clock, warnings});
  logger->set_level(spdlog::level::info);
  spdlog::set_default_logger(logger);
  int used_threads = configure_torch_threads(threads);

  // As train_command does: every family and the series computed on scrape exist.
  register_ddactor_metrics(global_metrics());
  auto checkpoint_age = register_checkpoint_age(global_metrics(), unix_time_seconds());
  auto activity = register_peer_activity(global_metrics(), peer_health::global());

  auto data = load_run_data(config);
  std::printf("quickstart model (DiT 128x4, patch 4) at 28x28, batch %d, %d LibTorch threads; "
              "%d warm-up steps, then %d segments of %d steps (on, off, off, on, ...); scraped "
              "every %.1f s while on\n",
              config.data.batch_size, used_threads, warmup, segments, segment, scrape_interval);
  arm_totals on_total, off_total;
  int scrapes = 0;
  for (int r = 0; r < runs; ++r) {
    arm_totals on, off;
    peer_run(config, scrape_interval, warmup, segment, data, *clock, on, off, scrapes);
    double batch = config.data.batch_size;
    std::printf("  run %d: metrics on %8.2f samples/s (%ld steps) | off %8.2f samples/s (%ld "
                "steps) | ratio %.4f\n",
                r + 1, on.steps * batch / on.seconds, static_cast<long>(on.steps),
                off.steps * batch / off.seconds, static_cast<long>(off.steps),
                (on.steps / on.seconds) / (off.steps / off.seconds));
    std::fflush(stdout);
    for (auto [total, arm] : {std::pair{&on_total, &on}, std::pair{&off_total, &off}}) {
      total->seconds += arm->seconds;
      total->steps += arm->steps;
      total->step_seconds.insert(total->step_seconds.end(), arm->step_seconds.begin(),
                                 arm->step_seconds.end());
    }
  }
  double batch = config.data.batch_size;
  double on_rate = on_total.steps * batch / on_total.seconds;
  double off_rate = off_total.steps * batch / off_total.seconds;
  std::printf("metrics on  : %.2f samples/s (%d scrapes of /metrics)\n", on_rate, scrapes);
  std::printf("metrics off : %.2f samples/s\n", off_rate);
  std::printf("ratio on/off: %.4f (all steps), %.4f (median step)  (target >= 0.99)\n",
              on_rate / off_rate,
              off_total.median_step_seconds() / on_total.median_step_seconds());
  // What a scrape costs, independent of the machine's noise: one render per scrape interval
  // against the training time it takes from.
  double render = render_seconds(200);
  std::printf("one scrape renders %zu bytes in %.3f ms: %.4f%% of a core at one scrape per "
              "%.1f s\n",
              render_prometheus_text(global_metrics()).size(), render * 1e3,
              scrape_interval > 0 ? 100.0 * render / scrape_interval : 0.0, scrape_interval);
  return 0;
}
