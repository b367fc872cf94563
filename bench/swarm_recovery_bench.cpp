// ddactor_swarm_recovery_bench: how long a swarm stalls when a peer dies. It starts 4 real ddactor
// training peers on loopback (a tiny DiT, so that a round -- an epoch of target_batch_size
// samples, its matchmaking and all-reduce -- takes about a second), waits until they train in
// step, measures the round interval, then SIGKILLs one peer at a random moment of a round and
// measures, on each survivor, the time from the kill to its next completed round (the
// timestamped "epoch N/..." lines of its log). Trials (--trials): a random peer other than the
// first ("random"), the first peer, the one the others bootstrapped from ("first"), and the
// matchmaking leader, the peer with the lowest id ("leader").
//
// Printed per trial and survivor: the median round interval before the kill, the time from the
// kill to the next round, their ratio, and the size of the group of that round (3 when the
// survivors averaged without the dead peer). Nothing is asserted.
//
//   ddactor_swarm_recovery_bench [--trials random,first,leader] [--target-batch-size 1024]
//       [--batch-size 32] [--warmup-epochs 5] [--baseline-epochs 6] [--after-epochs 3]
//       [--set key=value ...] [--seed 1] [--json PATH] [--keep-logs DIR]
#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "bench/spawned_process.hpp"

namespace {

using namespace ddactor;
using namespace std::chrono_literals;
using json = nlohmann::json;
using wall_clock = std::chrono::system_clock;

constexpr int swarm_size = 4;

struct settings {
  std::string binary = DDACTOR_BINARY;
  std::vector<std::string> trials{"random", "first", "leader"};
  int target_batch_size = 1024;
  int batch_size = 32;
  int warmup_epochs = 5;
  int baseline_epochs = 6;
  int after_epochs = 3;
  std::vector<std::string> overrides;
  uint64_t seed = 1;
  double trial_timeout = 300;
  std::string json_path;
  std::string keep_logs;
};

// One "epoch N/..." line of a peer's log: when it was written, and the round it reports.
struct epoch_line {
  int64_t epoch = 0;
  double time = 0;  // seconds since the epoch of the system clock
  int group_size = 0;
  bool grouped = false;
};

// Log lines start "YYYY-MM-DD HH:MM:SS.mmm" in local time.
std::optional<double> line_time(const std::string& line) {
  std::tm tm{};
  int ms = 0;
  if (std::sscanf(line.c_str(), "%d-%d-%d %d:%d:%d.%d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                  &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &ms) != 7)
    return std::nullopt;
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  tm.tm_isdst = -1;
  return static_cast<double>(std::mktime(&tm)) + ms / 1000.0;
}

double now_seconds() {
  return std::chrono::duration<double>(wall_clock::now().time_since_epoch()).count();
}

std::vector<epoch_line> epoch_lines(const std::string& log) {
  static const std::regex pattern(R"(\bepoch (\d+)/\S+ \|.*last round: (group|alone) of (\d+))");
  std::vector<epoch_line> out;
  std::istringstream lines(log);
  std::string line;
  while (std::getline(lines, line)) {
    std::smatch m;
    if (!std::regex_search(line, m, pattern))
      continue;
    auto t = line_time(line);
    if (!t)
      continue;
    out.push_back({std::stoll(m[1]), *t, std::stoi(m[3]), m[2] == "group"});
  }
  return out;
}

double median(std::vector<double> v) {
  if (v.empty())
    return 0;
  std::sort(v.begin(), v.end());
  auto m = v.size() / 2;
  return v.size() % 2 ? v[m] : 0.5 * (v[m - 1] + v[m]);
}

std::string config_text(const settings& s) {
  return "[run]\nname = \"recovery-bench\"\nthreads = 1\n"
         "[model]\nhidden_size = 32\ndepth = 1\nnum_heads = 2\npatch_size = 7\n"
         "[data]\nbatch_size = " +
         std::to_string(s.batch_size) +
         "\nprefetch = 2\n"
         "[train]\nsteps = 100000\ntarget_batch_size = " +
         std::to_string(s.target_batch_size) +
         "\nwarmup_steps = 2\nlog_every = 1\ncheckpoint_every = 100000\nkeep_checkpoints = 1\n"
         "sample_every = 0\n"
         "[sample]\nsteps = 1\nper_class = 1\n"
         "[network]\nwait_for_peers = " +
         std::to_string(swarm_size) + "\n[averaging]\nchunk_elements = 4096\n";
}

struct survivor_result {
  int peer = 0;
  double median_interval = 0;  // before the kill
  double recovery = 0;         // kill -> next completed round
  int group_size_after = 0;
  bool recovered = false;
};

struct trial_result {
  std::string name;
  int victim = 0;
  double kill_into_round = 0;  // seconds after the victim's last completed round
  std::vector<survivor_result> survivors;
  std::string problem;
};

class trial_runner {
 public:
  trial_runner(const settings& s, std::filesystem::path dir) : s_(s), dir_(std::move(dir)) {}

  trial_result run(const std::string& name, std::mt19937_64& random) {
    trial_result result;
    result.name = name;
    std::filesystem::create_directories(dir_);
    auto config = dir_ / "swarm.toml";
    std::ofstream(config) << config_text(s_);
    auto port = free_loopback_port();
    for (int i = 0; i < swarm_size; ++i) {
      std::vector<std::string> args{"--config", config.string(), "--set",
                                    "run.dir=\"" + run_dir(i).string() + "\""};
      auto network = loopback_swarm_args(i, port);
      args.insert(args.end(), network.begin(), network.end());
      for (const auto& o : s_.overrides)
        args.insert(args.end(), {"--set", o});
      peers_.push_back(std::make_unique<spawned_process>(s_.binary, args, log(i)));
      if (i == 0)
        std::this_thread::sleep_for(500ms);
    }
    auto deadline = std::chrono::steady_clock::now() +
                    std::chrono::milliseconds(static_cast<int64_t>(s_.trial_timeout * 1000));
    auto all_reach = [&](const std::vector<int>& who, int64_t epoch) {
      while (std::chrono::steady_clock::now() < deadline) {
        bool all = true;
        for (int i : who) {
          if (!peers_[static_cast<size_t>(i)]->running())
            return false;
          auto lines = epoch_lines(peers_[static_cast<size_t>(i)]->output());
          all = all && !lines.empty() && lines.back().epoch >= epoch;
        }
        if (all)
          return true;
        std::this_thread::sleep_for(20ms);
      }
      return false;
    };
    std::vector<int> everyone{0, 1, 2, 3};
    const int64_t kill_after = s_.warmup_epochs + s_.baseline_epochs;
    if (!all_reach(everyone, kill_after)) {
      result.problem = "the swarm did not reach epoch " + std::to_string(kill_after);
      return finish(result);
    }
    // The victim.
    int victim = 0;
    if (name == "random") {
      victim = 1 + static_cast<int>(random() % (swarm_size - 1));
    } else if (name == "leader") {
      std::string lowest;
      for (int i = 0; i < swarm_size; ++i) {
        auto id = read_whole_file(run_dir(i) / "peer" / "peer_id");
        id.erase(std::remove_if(id.begin(), id.end(), ::isspace), id.end());
        if (lowest.empty() || id < lowest)
          lowest = id, victim = i;
      }
    } else if (name != "first") {
      result.problem = "unknown trial '" + name + "' (random, first, leader)";
      return finish(result);
    }
    result.victim = victim;
    // A random moment of the victim's current round.
    auto victim_lines = epoch_lines(peers_[static_cast<size_t>(victim)]->output());
    std::vector<double> intervals;
    for (size_t k = 1; k < victim_lines.size(); ++k)
      if (victim_lines[k].epoch > s_.warmup_epochs)
        intervals.push_back(victim_lines[k].time - victim_lines[k - 1].time);
    double interval = std::max(0.05, median(intervals));
    double wait = std::uniform_real_distribution<double>(0.0, interval)(random);
    // Line times have a millisecond resolution; the wait counts from when it was written.
    double sleep_for = victim_lines.back().time + wait - now_seconds();
    if (sleep_for > 0)
      std::this_thread::sleep_for(std::chrono::duration<double>(sleep_for));
    double kill_time = now_seconds();
    peers_[static_cast<size_t>(victim)]->send_signal(SIGKILL);
    result.kill_into_round = kill_time - victim_lines.back().time;
    std::vector<int> survivors;
    for (int i = 0; i < swarm_size; ++i)
      if (i != victim)
        survivors.push_back(i);
    int64_t victim_epoch = victim_lines.back().epoch;
    if (!all_reach(survivors, victim_epoch + 1 + s_.after_epochs))
      result.problem = "the survivors did not complete " + std::to_string(s_.after_epochs + 1) +
                       " rounds after the kill";
    for (int i : survivors) {
      survivor_result r;
      r.peer = i;
      auto lines = epoch_lines(peers_[static_cast<size_t>(i)]->output());
      std::vector<double> before;
      for (size_t k = 1; k < lines.size(); ++k)
        if (lines[k].epoch > s_.warmup_epochs && lines[k].time <= kill_time)
          before.push_back(lines[k].time - lines[k - 1].time);
      r.median_interval = median(before);
      for (const auto& l : lines)
        if (l.time > kill_time) {
          r.recovery = l.time - kill_time;
          r.group_size_after = l.grouped ? l.group_size : 1;
          r.recovered = true;
          break;
        }
      result.survivors.push_back(r);
    }
    return finish(result);
  }

 private:
  std::filesystem::path run_dir(int i) const { return dir_ / ("peer" + std::to_string(i)); }
  std::filesystem::path log(int i) const { return dir_ / ("peer" + std::to_string(i) + ".log"); }

  trial_result finish(trial_result& result) {
    peers_.clear();  // SIGKILL and reap the rest
    return result;
  }

  const settings& s_;
  std::filesystem::path dir_;
  std::vector<std::unique_ptr<spawned_process>> peers_;
};

} // namespace

int main(int argc, char** argv) {
  CLI::App app{"Time from a peer's SIGKILL to the survivors' next round, against the round interval"};
  settings s;
  app.add_option("--ddactor", s.binary, "the ddactor binary")->capture_default_str();
  app.add_option("--trials", s.trials, "random, first, leader")->delimiter(',')->capture_default_str();
  app.add_option("--target-batch-size", s.target_batch_size, "samples per epoch (swarm)")
    ->capture_default_str();
  app.add_option("--batch-size", s.batch_size, "batch per peer")->capture_default_str();
  app.add_option("--warmup-epochs", s.warmup_epochs, "epochs not measured")->capture_default_str();
  app.add_option("--baseline-epochs", s.baseline_epochs, "epochs measured before the kill")
    ->capture_default_str();
  app.add_option("--after-epochs", s.after_epochs, "epochs the survivors must go on for")
    ->capture_default_str();
  app.add_option("--set", s.overrides, "config override for every peer, key=value (repeatable)");
  app.add_option("--seed", s.seed, "seed of the victim and kill moment")->capture_default_str();
  app.add_option("--trial-timeout", s.trial_timeout, "seconds per trial")->capture_default_str();
  app.add_option("--json", s.json_path, "write the figures to this JSON file");
  app.add_option("--keep-logs", s.keep_logs, "keep peer logs in this folder");
  CLI11_PARSE(app, argc, argv);

  std::filesystem::path root =
    s.keep_logs.empty()
      ? std::filesystem::temp_directory_path() / ("ddactor_recovery_bench_" + std::to_string(::getpid()))
      : std::filesystem::path(s.keep_logs);
  std::mt19937_64 random(s.seed);
  std::printf("4 ddactor peers on loopback, tiny DiT, target_batch_size %d, batch %d per peer; "
              "kill after epoch %d at a random moment of a round\n",
              s.target_batch_size, s.batch_size, s.warmup_epochs + s.baseline_epochs);
  std::fflush(stdout);
  json trials = json::array();
  std::vector<double> ratios;
  std::printf("\n%-7s %6s %9s %8s %12s %12s %7s %6s\n", "trial", "victim", "into rnd", "survivor",
              "interval s", "recovery s", "ratio", "group");
  for (const auto& name : s.trials) {
    trial_runner runner(s, root / name);
    auto r = runner.run(name, random);
    json j = {{"trial", r.name}, {"victim", r.victim}, {"kill_into_round_seconds", r.kill_into_round},
              {"problem", r.problem}};
    json survivors = json::array();
    for (const auto& x : r.survivors) {
      double ratio = x.median_interval > 0 ? x.recovery / x.median_interval : 0;
      if (x.recovered)
        ratios.push_back(ratio);
      std::printf("%-7s %6d %9.2f %8d %12.3f %12.3f %7.2f %6d%s\n", r.name.c_str(), r.victim,
                  r.kill_into_round, x.peer, x.median_interval,
                  x.recovered ? x.recovery : 0.0, ratio, x.group_size_after,
                  x.recovered ? "" : "  no round after the kill");
      survivors.push_back({{"peer", x.peer}, {"median_interval_seconds", x.median_interval},
                           {"recovery_seconds", x.recovery}, {"ratio", ratio},
                           {"group_size_after", x.group_size_after}, {"recovered", x.recovered}});
    }
    if (!r.problem.empty())
      std::printf("%-7s PROBLEM: %s (logs: %s)\n", r.name.c_str(), r.problem.c_str(),
                  (root / name).c_str());
    j["survivors"] = survivors;
    trials.push_back(j);
    std::fflush(stdout);
  }
  if (!ratios.empty())
    std::printf("\nrecovery / round interval: median %.2f, worst %.2f over %zu survivors\n",
                median(ratios), *std::max_element(ratios.begin(), ratios.end()), ratios.size());
  if (!s.json_path.empty()) {
    json out = {{"config",
                 {{"target_batch_size", s.target_batch_size}, {"batch_size", s.batch_size},
                  {"warmup_epochs", s.warmup_epochs}, {"baseline_epochs", s.baseline_epochs},
                  {"overrides", s.overrides}, {"seed", s.seed}}},
                {"trials", trials}};
    std::ofstream(s.json_path) << out.dump(2) << "\n";
    std::printf("figures written to %s\n", s.json_path.c_str());
  }
  bool problems = false;
  for (const auto& t : trials)
    problems = problems || !t["problem"].get<std::string>().empty();
  if (s.keep_logs.empty() && !problems)
    std::filesystem::remove_all(root);
  else
    std::printf("peer logs in %s\n", root.c_str());
  return 0;
}
