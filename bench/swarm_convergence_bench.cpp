// ddactor_swarm_convergence_bench: does a swarm learn as well as one peer that sees the same
// samples? One ddactor peer trains the quickstart DiT on Fashion-MNIST with batch B for S steps; a
// swarm of --peers real ddactor processes on loopback trains the same model with batch B/peers each
// and train.target_batch_size = B for S epochs (gradient averaging: one identical step per epoch,
// from the mean gradient of about B samples). Both final models (raw weights, not the EMA) are then
// scored by models/validation_loss on the first --validation-images images of the test split, with
// noise and times from a fixed seed, so the two losses compare. With --codecs, more swarms run with
// averaging.compression set to each codec and are compared with the float32 swarm ("overlap":
// float32 with averaging.overlap = true, gradients computed during a round on the weights one own
// step ahead, compared at equal samples and steps with float32 swarms whose samples bracket the
// overlapping swarm's (its epochs grow), the loss interpolated between them; "topk-plain": top-k
// with plain AdamW, averaging.topk_catch_up = false, to show what the catch-up buys; "liar":
// float32 with the last peer a reducer that negates its part's result, debug.byzantine =
// "lying_reducer", the honest peers auditing at averaging.audit_probability and discarding the
// round they catch it in; "liar-no-audits": the same with audits off; "scaler": the last peer sends
// reducers its values times -100, debug.byzantine = "scaled_values", which averaging.aggregation =
// "centered_clip" bounds; only the honest peers are scored). Aims (printed, never asserted): the
// swarm's loss at most 2% above the single peer's; each codec's at most 2% above the float32
// swarm's (lower is better: "no loss in what the model learns"); with a liar at most 5% above.
//
//   ddactor_swarm_convergence_bench [--steps 150] [--batch 128] [--peers 4] [--codecs int8,topk]
//       [--overlap-runs 1] [--validation-images 2000] [--set key=value ...] [--json PATH]
//       [--keep-logs DIR]
#include <torch/torch.h>

#include <unistd.h>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "app/torch_setup.hpp"
#include "bench/spawned_process.hpp"
#include "config/config_loader.hpp"
#include "models/checkpoint.hpp"
#include "models/validation_loss.hpp"
#include "runtime/checkpoint_files.hpp"
#include "runtime/run_data.hpp"
#include "runtime/safetensors.hpp"

namespace {

using namespace ddactor;
using namespace std::chrono_literals;
using json = nlohmann::json;
using clock_type = std::chrono::steady_clock;

struct settings {
  std::string binary = DDACTOR_BINARY;
  int64_t steps = 150;
  int batch = 128;
  int peers = 4;
  int64_t warmup_steps = -1;  // -1: steps / 10
  std::vector<std::string> codecs;
  int overlap_runs = 1;
  int64_t validation_images = 2000;
  uint64_t validation_seed = 0;
  std::vector<std::string> overrides;
  double timeout = 1800;
  std::string json_path;
  std::string keep_logs;
};

// The quickstart model and schedule (config/quickstart.toml), shortened to `steps`.
std::string base_config(const settings& s, int64_t warmup) {
  return "[run]\nname = \"convergence-bench\"\n"
         "[data]\nsource = \"fashion-mnist\"\nprefetch = 2\n"
         "[model]\npreset = \"custom\"\nhidden_size = 128\ndepth = 4\nnum_heads = 4\n"
         "patch_size = 4\n"
         "[train]\nsteps = " +
         std::to_string(s.steps) + "\nlr = 0.0005\nwarmup_steps = " + std::to_string(warmup) +
         "\nema_decay = 0.999\nlog_every = 25\ncheckpoint_every = 1000000\nkeep_checkpoints = 2\n"
         "sample_every = 0\n[sample]\nsteps = 1\nper_class = 1\n";
}

struct run_outcome {
  std::string name;
  bool ok = false;
  std::string problem;
  double seconds = 0;
  double loss = 0;
  int64_t samples = 0;  // consumed from the data order, over all peers
  size_t baseline = 1;  // the run its aim compares with (1: the float32 swarm)
  bool reference = false;  // only another run's baseline: no aim of its own
};

// Samples a checkpoint's data order position says were taken (epochs of the training set).
int64_t samples_of(const safetensors_content& content, int64_t train_count) {
  auto get = [&](const char* key) { return std::stoll(content.metadata.at(key)); };
  return get("data_epoch") * train_count + get("data_position");
}

// The loss of a float32 swarm at `samples`, linear between two runs at equal steps (beyond them
// when both lie on one side; the one run when there is only one).
run_outcome at_samples(const run_outcome& a, const run_outcome& b, int64_t samples) {
  run_outcome out = a;
  out.reference = true;
  out.seconds = 0;
  if (!a.ok || !b.ok || a.samples == b.samples) {
    if (!a.ok && b.ok)
      out = b;
    return out;
  }
  const double t = static_cast<double>(samples - a.samples) /
                   static_cast<double>(b.samples - a.samples);
  out.loss = a.loss + t * (b.loss - a.loss);
  out.samples = samples;
  out.name = "float32 at " + std::to_string(samples) + " samples, " +
             (t >= 0 && t <= 1 ? "interpolated" : "extrapolated");
  return out;
}

class convergence_runner {
 public:
  convergence_runner(const settings& s, std::filesystem::path root, const run_data& data)
    : s_(s), root_(std::move(root)), data_(data) {}

  run_outcome single() {
    run_outcome out;
    out.name = "single, batch " + std::to_string(s_.batch);
    auto dir = root_ / "single";
    std::vector<std::string> args{"--config", config_file().string(), "--set",
                                  "run.dir=\"" + (dir / "run").string() + "\"", "--set",
                                  "data.batch_size=" + std::to_string(s_.batch)};
    for (const auto& o : s_.overrides)
      args.insert(args.end(), {"--set", o});
    auto started = clock_type::now();
    spawned_process peer(s_.binary, args, dir / "peer.log");
    auto code = peer.wait_for(timeout());
    out.seconds = std::chrono::duration<double>(clock_type::now() - started).count();
    if (code != 0) {
      out.problem = peer.describe_exit(code);
      return out;
    }
    score(out, {dir / "run"});
    return out;
  }

  // `target`: train.target_batch_size, 0 for --batch; `repeat`: the how-manyth run of the same.
  run_outcome swarm(const std::string& codec, int64_t target = 0, int repeat = 0) {
    run_outcome out;
    out.name = "swarm " + std::to_string(s_.peers) + "x" + std::to_string(s_.batch / s_.peers) +
               ", " + (codec == "none" ? "float32" : codec);
    if (target > 0)
      out.name += ", epochs of " + std::to_string(target);
    else
      target = s_.batch;
    auto dir = root_ / ("swarm-" + codec + "-" + std::to_string(target));
    if (repeat > 0) {
      out.name += " (" + std::to_string(repeat + 1) + ")";
      dir += "-" + std::to_string(repeat + 1);
    }
    const bool plain_topk = codec == "topk-plain";
    const bool overlap = codec == "overlap";  // float32, rounds overlapped with compute
    // float32, the last peer hostile: it lies as reducer, or scales what it sends
    const std::string hostile = codec.starts_with("liar") ? "lying_reducer"
                                : codec == "scaler"        ? "scaled_values"
                                                           : "";
    const std::string wire_codec = plain_topk                      ? "topk"
                                   : overlap || !hostile.empty() ? "none"
                                                                 : codec;
    auto port = free_loopback_port();
    std::vector<std::unique_ptr<spawned_process>> peers;
    std::vector<std::filesystem::path> run_dirs;
    auto started = clock_type::now();
    for (int i = 0; i < s_.peers; ++i) {
      auto run_dir = dir / ("peer" + std::to_string(i));
      const bool hostile_peer = !hostile.empty() && i == s_.peers - 1;
      if (!hostile_peer)
        run_dirs.push_back(run_dir);
      std::vector<std::string> args{
        "--config", config_file().string(), "--set", "run.dir=\"" + run_dir.string() + "\"",
        "--set", "run.threads=1", "--set", "data.batch_size=" + std::to_string(s_.batch / s_.peers),
        "--set", "train.target_batch_size=" + std::to_string(target), "--set",
        "network.wait_for_peers=" + std::to_string(s_.peers), "--set",
        "averaging.compression=\"" + wire_codec + "\""};
      if (plain_topk)
        args.insert(args.end(), {"--set", "averaging.topk_catch_up=false"});
      args.insert(args.end(),
                  {"--set", std::string("averaging.overlap=") + (overlap ? "true" : "false")});
      if (codec == "liar-no-audits")
        args.insert(args.end(), {"--set", "averaging.audit_probability=0"});
      // A banned peer never reaches the end: it is stopped once the others are done.
      if (hostile_peer)
        args.insert(args.end(), {"--set", "debug.byzantine=\"" + hostile + "\"", "--set",
                                 "debug.allow_byzantine=true", "--set", "train.steps=1000000000"});
      auto network = loopback_swarm_args(i, port);
      args.insert(args.end(), network.begin(), network.end());
      for (const auto& o : s_.overrides)
        args.insert(args.end(), {"--set", o});
      peers.push_back(std::make_unique<spawned_process>(
        s_.binary, args, dir / ("peer" + std::to_string(i) + ".log")));
      if (i == 0)
        std::this_thread::sleep_for(500ms);
    }
    for (size_t i = 0; i < run_dirs.size(); ++i) {
      auto left = timeout() - std::chrono::duration_cast<std::chrono::milliseconds>(
                                clock_type::now() - started);
      auto code = peers[i]->wait_for(std::max(left, std::chrono::milliseconds(0)));
      if (code != 0 && out.problem.empty())
        out.problem = "peer " + std::to_string(i) + ": " + peers[i]->describe_exit(code);
    }
    out.seconds = std::chrono::duration<double>(clock_type::now() - started).count();
    peers.clear();
    if (out.problem.empty())
      score(out, run_dirs);
    return out;
  }

 private:
  std::chrono::milliseconds timeout() const {
    return std::chrono::milliseconds(static_cast<int64_t>(s_.timeout * 1000));
  }

  std::filesystem::path config_file() {
    auto path = root_ / "base.toml";
    if (!std::filesystem::exists(path)) {
      std::filesystem::create_directories(root_);
      std::ofstream(path) << base_config(
        s_, s_.warmup_steps >= 0 ? s_.warmup_steps : std::max<int64_t>(1, s_.steps / 10));
    }
    return path;
  }

  // The final checkpoint of the first run dir is scored; the others only add their samples and
  // must hold the same weights (gradient averaging keeps replicas identical).
  void score(run_outcome& out, const std::vector<std::filesystem::path>& run_dirs) {
    try {
      std::vector<safetensors_content> finals;
      for (const auto& dir : run_dirs) {
        finals.push_back(read_safetensors_file(checkpoint_path(dir, s_.steps)));
        out.samples += samples_of(finals.back(), data_.train->count);
      }
      for (size_t k = 1; k < finals.size(); ++k)
        for (size_t t = 0; t < finals[0].tensors.size(); ++t)
          if (finals[0].tensors[t].name.starts_with("model.") &&
              finals[0].tensors[t].data != finals[k].tensors[t].data) {
            out.problem = "peer " + std::to_string(k) + " ended with other weights than peer 0";
            return;
          }
      dit model(model_options_of(finals[0]));
      load_weights(finals[0], model, /*use_ema=*/false);
      validation_loss_options o;
      o.images = s_.validation_images;
      o.seed = s_.validation_seed;
      // On a worker thread: on the main thread OpenBLAS and OpenMP contend (torch_setup.hpp).
      run_on_worker_thread([&] { out.loss = validation_loss(model, *data_.holdout, o); });
      out.ok = true;
    } catch (const std::exception& e) {
      out.problem = std::string("scoring failed: ") + e.what();
    }
  }

  const settings& s_;
  std::filesystem::path root_;
  const run_data& data_;
};

} // namespace

int main(int argc, char** argv) {
  use_passive_openmp_wait(argv);
  CLI::App app{"Validation loss of a swarm against one peer seeing the same samples"};
  settings s;
  app.add_option("--ddactor", s.binary, "the ddactor binary")->capture_default_str();
  app.add_option("--steps", s.steps, "steps of the single peer = epochs of the swarm")
    ->capture_default_str();
  app.add_option("--batch", s.batch, "batch B of the single peer = target batch of the swarm")
    ->capture_default_str();
  app.add_option("--peers", s.peers, "swarm size (batch B / peers each)")->capture_default_str();
  app.add_option("--warmup-steps", s.warmup_steps, "learning-rate warm-up (-1: steps / 10)")
    ->capture_default_str();
  app.add_option("--codecs", s.codecs,
                 "also swarms with these codecs (e.g. int8,topk,topk-plain,overlap,liar,"
                 "liar-no-audits,scaler)")
    ->delimiter(',');
  app.add_option("--overlap-runs", s.overlap_runs,
                 "runs of the overlap swarm (its epochs follow the rounds' timing, so runs "
                 "differ); its aim takes their mean")
    ->capture_default_str()
    ->check(CLI::Range(1, 20));
  app.add_option("--validation-images", s.validation_images, "first N test images")
    ->capture_default_str();
  app.add_option("--validation-seed", s.validation_seed, "seed of noise and times")
    ->capture_default_str();
  app.add_option("--set", s.overrides, "config override for every run, key=value (repeatable)");
  app.add_option("--timeout", s.timeout, "seconds per run")->capture_default_str();
  app.add_option("--json", s.json_path, "write the figures to this JSON file");
  app.add_option("--keep-logs", s.keep_logs, "keep runs and logs in this folder");
  CLI11_PARSE(app, argc, argv);
  spdlog::set_level(spdlog::level::warn);
  configure_torch_threads(0);
  if (s.peers < 1 || s.batch % s.peers != 0) {
    std::fprintf(stderr, "--batch must be a multiple of --peers\n");
    return 2;
  }

  std::filesystem::path root =
    s.keep_logs.empty()
      ? std::filesystem::temp_directory_path() /
          ("ddactor_convergence_bench_" + std::to_string(::getpid()))
      : std::filesystem::path(s.keep_logs);
  std::filesystem::create_directories(root);
  auto data = load_run_data(parse_run_config("", "defaults"));
  std::printf("quickstart DiT on Fashion-MNIST: single peer batch %d x %lld steps vs %d peers "
              "batch %d, target_batch_size %d, %lld epochs; validation loss on the first %lld test "
              "images (seed %llu), raw weights\n",
              s.batch, static_cast<long long>(s.steps), s.peers, s.batch / s.peers, s.batch,
              static_cast<long long>(s.steps), static_cast<long long>(s.validation_images),
              static_cast<unsigned long long>(s.validation_seed));
  std::fflush(stdout);
  convergence_runner runner(s, root, data);
  std::vector<run_outcome> runs;
  auto report = [&](const run_outcome& r) {
    std::printf("  %-26s %s (%.0f s)\n", r.name.c_str(),
                r.ok ? ("validation loss " + std::to_string(r.loss)).c_str()
                     : ("PROBLEM: " + r.problem).c_str(),
                r.seconds);
    std::fflush(stdout);
  };
  runs.push_back(runner.single());
  report(runs.back());
  runs.push_back(runner.swarm("none"));
  report(runs.back());
  std::vector<size_t> overlapped;  // the overlap runs that ended well
  for (const auto& codec : s.codecs) {
    if (codec == "none")
      continue;
    if (codec != "overlap") {
      runs.push_back(runner.swarm(codec));
      report(runs.back());
      continue;
    }
    // Overlap's epochs grow with the rounds' timing, so its runs differ more than the float32
    // swarm's (0.4276 and 0.4427 in two runs of 150 epochs): --overlap-runs repeats it.
    for (int k = 0; k < s.overlap_runs; ++k) {
      runs.push_back(runner.swarm(codec, 0, k));
      report(runs.back());
      if (runs.back().ok)
        overlapped.push_back(runs.size() - 1);
    }
    if (overlapped.empty())
      continue;
    // An epoch grows by the batches in flight when a round ends (before 2026-12-07 while a round
    // outlasted its compute, up to twice what each peer put into it): at equal epochs it saw
    // more samples in larger batches. Where they differ by more than a tenth, its aim compares
    // it at equal steps and samples with float32 swarms whose samples bracket its own, the loss
    // interpolated between them.
    double mean_samples = 0;
    for (auto k : overlapped)
      mean_samples += static_cast<double>(runs[k].samples) / static_cast<double>(overlapped.size());
    if (mean_samples <= 1.1 * static_cast<double>(runs[1].samples))
      continue;  // about the float32 swarm's
    const auto yardstick = [&](int64_t target) {
      runs.push_back(runner.swarm("none", target));
      runs.back().reference = true;
      report(runs.back());
      return runs.size() - 1;
    };
    // Epochs come in whole peer batches, and peers still computing when the target is reached
    // add theirs: what the float32 epochs of --batch took beyond it adds to any target.
    const int64_t quantum = s.batch / s.peers;
    const double steps = static_cast<double>(std::max<int64_t>(1, s.steps));
    const double beyond = std::max(0.0, static_cast<double>(runs[1].samples) / steps - s.batch);
    const auto first_target = std::max<int64_t>(
      s.batch, static_cast<int64_t>((mean_samples / steps - beyond) / quantum) * quantum);
    const auto first = yardstick(first_target);
    auto second = first;
    if (runs[first].ok) {
      const auto other = static_cast<double>(runs[first].samples) > mean_samples
                           ? first_target - quantum
                           : first_target + quantum;
      if (other >= s.batch)
        second = yardstick(other);
    }
    for (auto k : overlapped) {
      runs.push_back(at_samples(runs[first], runs[second], runs[k].samples));
      report(runs.back());
      runs[k].baseline = runs.size() - 1;
    }
  }

  const auto& single = runs[0];
  const auto& fp32 = runs[1];
  std::printf("\n%-26s %10s %11s %13s %13s %8s\n", "run", "val loss", "vs single", "vs fp32 swarm",
              "samples seen", "wall s");
  json table = json::array();
  std::vector<std::string> aims;
  for (size_t k = 0; k < runs.size(); ++k) {
    const auto& r = runs[k];
    double vs_single = r.ok && single.ok ? r.loss / single.loss : 0;
    double vs_fp32 = k >= 1 && r.ok && fp32.ok ? r.loss / fp32.loss : 0;
    std::printf("%-26s %10.5f %11s %13s %13lld %8.0f\n", r.name.c_str(), r.loss,
                r.ok && single.ok ? std::to_string(vs_single).substr(0, 6).c_str() : "-",
                k >= 1 && r.ok && fp32.ok ? std::to_string(vs_fp32).substr(0, 6).c_str() : "-",
                static_cast<long long>(r.samples), r.seconds);
    table.push_back({{"run", r.name}, {"ok", r.ok}, {"problem", r.problem},
                     {"validation_loss", r.loss}, {"vs_single", vs_single},
                     {"vs_fp32_swarm", vs_fp32}, {"samples", r.samples}, {"seconds", r.seconds}});
  }
  auto aim = [&](const std::string& what, const run_outcome& a, const run_outcome& b,
                 int percent = 2) {
    if (!a.ok || !b.ok) {
      std::printf("aim: %s at most %d%% above: not measured\n", what.c_str(), percent);
      return json{{"aim", what}, {"measured", false}};
    }
    double ratio = a.loss / b.loss;
    bool met = ratio <= 1 + percent / 100.0;
    std::printf("aim: %s at most %d%% above: %s (ratio %.4f)\n", what.c_str(), percent,
                met ? "met" : "NOT met", ratio);
    return json{{"aim", what}, {"measured", true}, {"ratio", ratio}, {"met", met}};
  };
  json aims_json = json::array();
  aims_json.push_back(aim("swarm / single", fp32, single));
  for (size_t k = 2; k < runs.size(); ++k)
    if (!runs[k].reference)
      aims_json.push_back(aim(runs[k].name + " / " + runs[runs[k].baseline].name, runs[k],
                              runs[runs[k].baseline],
                              runs[k].name.find("liar") != std::string::npos ||
                                  runs[k].name.find("scaler") != std::string::npos
                                ? 5
                                : 2));
  if (overlapped.size() > 1) {
    std::vector<double> ratios;
    std::string each;
    for (auto k : overlapped)
      if (const auto& yard = runs[runs[k].baseline]; yard.ok) {
        ratios.push_back(runs[k].loss / yard.loss);
        each += (each.empty() ? "" : ", ") + std::to_string(ratios.back()).substr(0, 6);
      }
    double mean_ratio = 0;
    for (auto r : ratios)
      mean_ratio += r / static_cast<double>(std::max<size_t>(ratios.size(), 1));
    const bool met = !ratios.empty() && mean_ratio <= 1.02;
    std::printf("aim: overlap, mean of %zu runs, at most 2%% above: %s (ratio %.4f; runs %s)\n",
                ratios.size(), met ? "met" : "NOT met", mean_ratio, each.c_str());
    aims_json.push_back({{"aim", "overlap, mean of runs"}, {"measured", true},
                         {"ratio", mean_ratio}, {"met", met}});
  }
  if (!s.json_path.empty()) {
    json out = {{"config",
                 {{"steps", s.steps}, {"batch", s.batch}, {"peers", s.peers},
                  {"codecs", s.codecs}, {"overlap_runs", s.overlap_runs},
                  {"validation_images", s.validation_images},
                  {"validation_seed", s.validation_seed}, {"overrides", s.overrides}}},
                {"runs", table},
                {"aims", aims_json}};
    std::ofstream(s.json_path) << out.dump(2) << "\n";
    std::printf("figures written to %s\n", s.json_path.c_str());
  }
  bool problems = false;
  for (const auto& r : runs)
    problems = problems || !r.ok;
  if (s.keep_logs.empty() && !problems)
    std::filesystem::remove_all(root);
  else
    std::printf("runs and logs in %s\n", root.c_str());
  return 0;
}
