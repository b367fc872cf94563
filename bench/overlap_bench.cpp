// ddactor_overlap_bench: how much of the peers' compute a swarm keeps when its rounds cross slow
// links, with training paused for every round (averaging.overlap = false) and overlapped with it
// (true). For each n in --peers, n real ddactor processes train the quickstart DiT in a network
// lab (bench/netlab: every host's link shaped to --rate Mbit/s and --delay ms one way):
//   1. alone: the n peers train at the same time without a swarm (same CPU contention): the
//      bound, R_alone samples/s summed over the peers;
//   2. the swarm, overlap off; 3. the swarm, overlap on;
// each for --seconds. train.target_batch_size is chosen so that an epoch's compute takes about
// as long as the round's transfer bound 2(n-1)/n * 4 bytes * parameters / rate plus 4 round
// trips (the case where pausing loses half of the compute). Printed: samples/s of each and the
// ratio to R_alone (aim with overlap: >= 0.9), and the share of samples trained during rounds.
// Samples are those each peer reports when it ends ("N samples trained here"), so the swarm's
// time to find its peers counts against it; a second line gives the rates while training (each
// peer's samples over the time from its start, in a swarm from finding its peers, to its end).
// The peers are told they are reachable: the lab's relays hide where connections come from.
//
//   ddactor_overlap_bench [--peers 2,4] [--seconds 60] [--rate 100] [--delay 50] [--batch 32]
//       [--repeats 1] [--validation-images 0] [--keep-logs DIR] [--set key=value ...]
//
// On a shared 2-core machine one run's ratios move by 0.1 or more from run to run (the alone
// rate itself drifts); --repeats N runs the three phases N times and prints the medians.
//
// What the compute kept buys: with --validation-images N (0: skip), the held-out loss of each
// swarm's final weights (peer 0's checkpoint; raw weights, the first N test images, fixed noise
// as in ddactor_swarm_convergence_bench) after the same wall-clock time, paused against
// overlapped. Overlap trains more samples on weights one own step ahead (at equal epochs it
// costs about 1.4%, README); this says which wins in the time a user waits. The quickstart's
// warm-up (100 steps) outlasts short phases: --set train.warmup_steps=5 keeps it from deciding.
//
// Needs root (network namespaces); prints "skipped: ..." where the lab cannot be built.
#include <unistd.h>

#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "app/torch_setup.hpp"
#include "bench/netlab/lab_swarm.hpp"
#include "bench/netlab/netlab.hpp"
#include "config/config_loader.hpp"
#include "models/checkpoint.hpp"
#include "models/validation_loss.hpp"
#include "runtime/checkpoint_files.hpp"
#include "runtime/run_data.hpp"
#include "runtime/safetensors.hpp"

namespace {

using namespace ddactor;
using clock_type = std::chrono::steady_clock;

constexpr uint16_t peer_port = 7000;
constexpr uint16_t relay_port = 7100;

struct settings {
  std::vector<int> peers{2, 4};
  double seconds = 60;
  double rate_mbit = 100;
  double delay_ms = 50;
  int batch = 32;
  int repeats = 1;
  int64_t validation_images = 0;
  std::string keep_logs;
  std::vector<std::string> overrides;
};

struct phase_result {
  int64_t samples = 0;
  int64_t overlapped = 0;
  // Samples per second from the moment each peer trains (for a swarm: once it has found its
  // peers) to its end, summed over the peers: the rate of a long run, without the start.
  double training_rate = 0;
  int64_t parameters = 0;
  int64_t epochs = 0;  // the swarm's, as peer 0 ended (0: alone)
  std::filesystem::path first_run_dir;  // peer 0's
  bool ok = true;
  std::string problem;
};

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Seconds since midnight of the first log line holding `marker` (lines start with
// "YYYY-MM-DD HH:MM:SS.mmm").
std::optional<double> time_of_line_with(const std::string& log, const std::string& marker) {
  const auto at = log.find(marker);
  if (at == std::string::npos)
    return std::nullopt;
  const auto line = log.rfind('\n', at);
  const auto start = line == std::string::npos ? 0 : line + 1;
  int h = 0, m = 0;
  double sec = 0;
  if (std::sscanf(log.c_str() + start, "%*d-%*d-%*d %d:%d:%lf", &h, &m, &sec) != 3)
    return std::nullopt;
  return h * 3600.0 + m * 60.0 + sec;
}

// How long a peer trained: from its trainer being ready (and, in a swarm, its peers found) to
// its finishing line.
std::optional<double> training_seconds(const std::string& log, bool swarm) {
  auto begin = time_of_line_with(log, "trainer ready");
  const auto found = time_of_line_with(log, "peers in the swarm: training starts");
  auto end = time_of_line_with(log, "samples trained here");
  if (!begin || !end || (swarm && !found))
    return std::nullopt;
  if (swarm)
    begin = std::max(*begin, *found);
  if (*end < *begin)
    *end += 24 * 3600.0;  // past midnight
  return *end - *begin;
}

double median(std::vector<double> values) {
  if (values.empty())
    return 0;
  std::sort(values.begin(), values.end());
  const auto mid = values.size() / 2;
  return values.size() % 2 == 1 ? values[mid] : (values[mid - 1] + values[mid]) / 2;
}

std::string listed(const std::vector<double>& values) {
  std::string text;
  char item[32];
  for (double v : values) {
    std::snprintf(item, sizeof item, "%s%.3f", text.empty() ? "" : " ", v);
    text += item;
  }
  return text;
}

// One phase: n peers in a fresh lab, alone or as a swarm, for s.seconds.
phase_result run_phase(const settings& s, int n, const std::string& mode, int64_t target,
                       const std::filesystem::path& logs) {
  netlab_options options;
  options.rate_mbit = s.rate_mbit;
  options.one_way_delay_ms = s.delay_ms;
  netlab lab(n, options);
  std::vector<uint16_t> dial;
  for (int i = 0; i < n; ++i)
    dial.push_back(mode == "alone" ? peer_port : lab.add_relay(i, peer_port, relay_port));
  std::vector<pid_t> pids;
  std::vector<std::filesystem::path> log_files;
  phase_result result;
  for (int i = 0; i < n; ++i) {
    const auto dir = logs / (mode + "-n" + std::to_string(n) + "-peer" + std::to_string(i));
    std::filesystem::remove_all(dir);
    if (i == 0)
      result.first_run_dir = dir;
    std::vector<std::string> argv{
      DDACTOR_BINARY, "--config", DDACTOR_QUICKSTART, "--set", "run.dir=\"" + dir.string() + "\"",
      "--set", "train.steps=0", "--set", "train.max_seconds=" + std::to_string(s.seconds),
      "--set", "train.sample_every=0", "--set", "sample.steps=1", "--set",
      "train.checkpoint_every=1000000", "--set",
      "data.batch_size=" + std::to_string(s.batch), "--set", "run.threads=1"};
    if (mode != "alone") {
      const auto listen = lab.address(i) + ":" + std::to_string(peer_port);
      const auto announce = lab.address(i) + ":" + std::to_string(dial[static_cast<size_t>(i)]);
      argv.insert(argv.end(),
                  {"--set", "network.listen=\"" + listen + "\"", "--set",
                   "network.announce=\"" + announce + "\"",
                   "--set", "network.wait_for_peers=" + std::to_string(n), "--set",
                   "train.target_batch_size=" + std::to_string(target), "--set",
                   std::string("averaging.overlap=") + (mode == "overlap" ? "true" : "false"),
                   "--set", "train.log_every=1",
                   // Relayed connections come from the host's own address: the probe would
                   // take peers for ones behind NAT (no part to reduce, links through relays).
                   "--set", "network.reachable=\"yes\""});
      if (i > 0)
        argv.insert(argv.end(), {"--set", "network.initial_peers=[\"" + lab.address(0) + ":" +
                                            std::to_string(dial[0]) + "\"]"});
    }
    for (const auto& o : s.overrides)
      argv.insert(argv.end(), {"--set", o});
    log_files.push_back(dir.string() + ".log");
    pids.push_back(lab.spawn(i, argv, log_files.back()));
  }
  const auto limit = std::chrono::milliseconds(static_cast<int64_t>((s.seconds + 120) * 1000));
  const std::regex finished(R"(finished at (epoch|step) (\d+) )"
                            R"(\((\d+) samples trained here, (\d+) of them during rounds[,)])");
  const std::regex parameters(R"(with (\d+) trained parameters)");
  for (int i = 0; i < n; ++i) {
    auto code = lab.wait(pids[static_cast<size_t>(i)], limit);
    const auto log = read_file(log_files[static_cast<size_t>(i)]);
    std::smatch m;
    if (!code || *code != 0 || !std::regex_search(log, m, finished)) {
      result.ok = false;
      // An exit 0 without the finishing line means the line changed, not the peer.
      const auto what = !code        ? std::string("timeout")
                        : *code != 0 ? "exit " + std::to_string(*code)
                                     : std::string("exit 0 without the finishing line");
      result.problem = "peer " + std::to_string(i) + " of " + mode + " failed (" + what +
                       "): see " + log_files[static_cast<size_t>(i)].string();
      continue;
    }
    const int64_t samples = std::stoll(m[3]);
    result.samples += samples;
    result.overlapped += std::stoll(m[4]);
    if (i == 0 && m[1] == "epoch")
      result.epochs = std::stoll(m[2]);
    if (const auto seconds = training_seconds(log, mode != "alone"); seconds && *seconds > 0)
      result.training_rate += static_cast<double>(samples) / *seconds;
    else
      result.problem =
        "peer " + std::to_string(i) + " of " + mode + ": no training time in its log";
    if (std::regex_search(log, m, parameters))
      result.parameters = std::stoll(m[1]);
  }
  return result;
}

// The held-out loss of the newest checkpoint in `run_dir` (raw weights); nullopt, with
// `problem` set, where there is none or it cannot be read.
std::optional<double> held_out_loss(const std::filesystem::path& run_dir,
                                    const image_dataset& holdout, int64_t images,
                                    std::string& problem) {
  try {
    const auto files = list_checkpoints(run_dir);
    if (files.empty()) {
      problem = "no checkpoint in " + run_dir.string();
      return std::nullopt;
    }
    const auto content = read_safetensors_file(files.back().path);
    dit model(model_options_of(content));
    load_weights(content, model, /*use_ema=*/false);
    validation_loss_options options;
    options.images = images;
    double loss = 0;
    // On a worker thread: on the main thread OpenBLAS and OpenMP contend (torch_setup.hpp).
    run_on_worker_thread([&] { loss = validation_loss(model, holdout, options); });
    return loss;
  } catch (const std::exception& e) {
    problem = std::string("scoring ") + run_dir.string() + " failed: " + e.what();
    return std::nullopt;
  }
}

}  // namespace

int main(int argc, char** argv) {
  // The peers admit each other by this key (inherited by every process the lab starts).
  ::setenv("DDACTOR_SWARM_KEY", lab_swarm_key, /*overwrite=*/0);
  settings s;
  std::string peers = "2,4";
  CLI::App app{"Compute utilisation of a swarm on slow links, overlap off and on"};
  app.add_option("--peers", peers, "comma-separated swarm sizes")->capture_default_str();
  app.add_option("--seconds", s.seconds, "training time of each phase")->capture_default_str();
  app.add_option("--rate", s.rate_mbit, "link rate per host, Mbit/s")->capture_default_str();
  app.add_option("--delay", s.delay_ms, "one-way delay per link, ms")->capture_default_str();
  app.add_option("--batch", s.batch, "data.batch_size of each peer")->capture_default_str();
  app.add_option("--repeats", s.repeats,
                 "runs of the three phases per n (each with its own alone phase); with more than "
                 "one, the medians of the ratios are printed too")
    ->capture_default_str()
    ->check(CLI::Range(1, 100));
  app.add_option("--validation-images", s.validation_images,
                 "score each swarm's final weights on this many held-out images (0: skip)")
    ->capture_default_str()
    ->check(CLI::Range(int64_t{0}, int64_t{10000}));
  app.add_option("--keep-logs", s.keep_logs, "keep the peers' run folders and logs here");
  app.add_option("--set", s.overrides, "extra config override for every peer (key=value)");
  CLI11_PARSE(app, argc, argv);
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // a row as soon as it is measured
  s.peers.clear();
  for (std::stringstream in(peers); in.good();) {
    std::string item;
    std::getline(in, item, ',');
    if (!item.empty())
      s.peers.push_back(std::stoi(item));
  }
  const auto logs = s.keep_logs.empty()
                      ? std::filesystem::temp_directory_path() /
                          ("ddactor_overlap_bench_" + std::to_string(::getpid()))
                      : std::filesystem::path(s.keep_logs);
  std::filesystem::create_directories(logs);
  try {
    netlab::cleanup_stale();
  } catch (const netlab_unavailable& e) {
    std::printf("skipped: %s\n", e.what());
    return 0;
  }
  std::shared_ptr<const image_dataset> holdout;
  if (s.validation_images > 0)
    holdout = load_run_data(load_run_config(DDACTOR_QUICKSTART, s.overrides)).holdout;
  std::printf("links: %.0f Mbit/s, %.0f ms one way; %.0f s per phase; batch %d per peer\n",
              s.rate_mbit, s.delay_ms, s.seconds, s.batch);
  std::printf("%5s %8s %10s %10s %8s %10s %8s %9s\n", "peers", "target", "alone/s", "off/s",
              "off/x", "on/s", "on/x", "overlap");
  for (int n : s.peers) {
    // The target batch is chosen once, from the first alone phase, so that every repeat trains
    // the same epochs; each repeat measures its own alone rate (the machine's speed drifts).
    int64_t target = 0;
    std::vector<double> off_x, on_x, on_training_x, loss_x;
    for (int repeat = 0; repeat < s.repeats; ++repeat) {
      auto alone = run_phase(s, n, "alone", 0, logs);
      if (!alone.ok) {
        std::printf("%5d alone failed: %s\n", n, alone.problem.c_str());
        break;
      }
      const double alone_rate = static_cast<double>(alone.samples) / s.seconds;
      const double bytes = 2.0 * (n - 1) / n * 4.0 * static_cast<double>(alone.parameters);
      const double round_bound = bytes * 8 / (s.rate_mbit * 1e6) + 4 * (2 * s.delay_ms / 1000);
      if (target == 0)
        target = std::max<int64_t>(
          s.batch,
          static_cast<int64_t>(std::llround(alone_rate * round_bound / s.batch)) * s.batch);
      auto off = run_phase(s, n, "paused", target, logs);
      auto on = run_phase(s, n, "overlap", target, logs);
      auto rate = [&](const phase_result& r) {
        return static_cast<double>(r.samples) / s.seconds;
      };
      std::printf("%5d %8lld %10.1f %10.1f %8.3f %10.1f %8.3f %8.0f%%\n", n,
                  static_cast<long long>(target), alone_rate, rate(off), rate(off) / alone_rate,
                  rate(on), rate(on) / alone_rate,
                  100.0 * static_cast<double>(on.overlapped) / std::max<int64_t>(on.samples, 1));
      off_x.push_back(rate(off) / alone_rate);
      on_x.push_back(rate(on) / alone_rate);
      if (alone.training_rate > 0) {
        std::printf("      while training (from each peer's start or, in a swarm, once its peers "
                    "are found): alone %.1f/s, off %.1f/s = %.3f, on %.1f/s = %.3f\n",
                    alone.training_rate, off.training_rate,
                    off.training_rate / alone.training_rate, on.training_rate,
                    on.training_rate / alone.training_rate);
        on_training_x.push_back(on.training_rate / alone.training_rate);
      }
      std::printf("      (%lld parameters; round bound %.2f s = %.2f MB each way + 4 round "
                  "trips)\n",
                  static_cast<long long>(alone.parameters), round_bound, bytes / 1e6);
      // Overlap trains into the next epoch while a round runs: epochs grow where rounds take
      // longer than the compute that the next epoch needs.
      auto per_epoch = [](const phase_result& r) {
        return r.epochs > 0 ? static_cast<double>(r.samples) / static_cast<double>(r.epochs) : 0;
      };
      std::printf("      epochs: paused %lld of %.0f samples, overlapped %lld of %.0f "
                  "(target %lld)\n",
                  static_cast<long long>(off.epochs), per_epoch(off),
                  static_cast<long long>(on.epochs), per_epoch(on),
                  static_cast<long long>(target));
      if (holdout && off.ok && on.ok) {
        std::string problem;
        const auto off_loss = held_out_loss(off.first_run_dir, *holdout, s.validation_images,
                                            problem);
        const auto on_loss = held_out_loss(on.first_run_dir, *holdout, s.validation_images,
                                           problem);
        if (off_loss && on_loss) {
          std::printf("      held-out loss after %.0f s (%lld test images, raw weights): paused "
                      "%.5f, overlapped %.5f = %.4fx\n",
                      s.seconds, static_cast<long long>(s.validation_images), *off_loss,
                      *on_loss, *on_loss / *off_loss);
          loss_x.push_back(*on_loss / *off_loss);
        } else {
          std::printf("      held-out loss: %s\n", problem.c_str());
        }
      }
      for (const auto* r : {&alone, &off, &on})
        if (!r->problem.empty())
          std::printf("      problem: %s\n", r->problem.c_str());
    }
    if (on_x.size() > 1)
      std::printf("%5d median of %zu runs: off/x %.3f, on/x %.3f (%s), while training on %.3f "
                  "(%s); aim with overlap: >= 0.9\n",
                  n, on_x.size(), median(off_x), median(on_x), listed(on_x).c_str(),
                  median(on_training_x), listed(on_training_x).c_str());
    if (loss_x.size() > 1)
      std::printf("%5d held-out loss, overlapped against paused at equal time: median %.4fx "
                  "(%s)\n",
                  n, median(loss_x), listed(loss_x).c_str());
  }
  if (s.keep_logs.empty())
    std::filesystem::remove_all(logs);
  return 0;
}
