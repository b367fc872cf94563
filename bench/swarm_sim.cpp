// ddactor_swarm_sim: a whole swarm in virtual time (runtime/simulation/swarm_simulation.hpp):
// N virtual peers run the product's membership, matchmaking and all-reduce state machines over a
// network model with churn, loss, slow peers and a partition, and every invariant is checked as
// it runs. The same command prints the same report, byte for byte (stdout); the wall-clock cost
// goes to stderr. Exit status 1 when an invariant was violated.
//
//   ddactor_swarm_sim --peers 100 --seed 7 --minutes 5 [--joiners 0.1] [--churn 0.1] [--loss 0.005]
//       [--slow 0.1] [--partition] [--cut-links 0.05] [--group-size 16] [--length 256]
//   ddactor_swarm_sim --figures    the figures: N = 10, 100, 1000 under 10% churn
#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdio>

#include "runtime/simulation/swarm_simulation.hpp"

namespace {

using ddactor::swarm_simulation_config;

int run_one(const swarm_simulation_config& config, bool print_text) {
  const auto started = std::chrono::steady_clock::now();
  const auto report = ddactor::run_swarm_simulation(config);
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  if (print_text)
    std::fputs(report.text.c_str(), stdout);
  std::fprintf(stderr, "wall clock: %.2f s for %.1f simulated minutes (%.2f s per minute, %llu events)\n",
               wall, config.minutes, wall / config.minutes,
               static_cast<unsigned long long>(report.events));
  if (!report.violations.empty())
    std::fprintf(stderr, "replay: %s\n", ddactor::replay_command(config).c_str());
  return report.violations.empty() ? 0 : 1;
}

int figures(const swarm_simulation_config& base) {
  std::printf("%6s %8s %14s %14s %14s %12s %10s %12s\n", "peers", "minutes", "gossip B/peer/s",
              "join->views s", "join max s", "epochs/min", "averaged", "wall s/min");
  int status = 0;
  for (std::size_t n : {10, 100, 1000}) {
    auto config = base;
    config.peers = n;
    config.churn_per_minute = 0.1;
    config.joiners = 0.1;
    config.minutes = n >= 1000 ? 2 : 5;
    const auto started = std::chrono::steady_clock::now();
    const auto report = ddactor::run_swarm_simulation(config);
    const double wall =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    std::printf("%6zu %8.0f %14.0f %14.2f %14.2f %12.2f %10llu %12.2f\n", n, config.minutes,
                report.gossip_bytes_per_peer_second, report.join_propagation_mean_seconds,
                report.join_propagation_max_seconds, report.epochs_per_minute,
                static_cast<unsigned long long>(report.rounds_averaged), wall / config.minutes);
    std::fflush(stdout);
    for (const auto& v : report.violations)
      std::printf("  violation: %s\n", v.c_str());
    if (!report.violations.empty()) {
      std::printf("  replay: %s\n", ddactor::replay_command(config).c_str());
      status = 1;
    }
  }
  return status;
}

} // namespace

int main(int argc, char** argv) {
  CLI::App app{"Simulates a ddactor swarm in virtual time and checks its invariants"};
  swarm_simulation_config config;
  bool partition = false, run_figures = false;
  app.add_option("--peers", config.peers, "virtual peers")->capture_default_str();
  app.add_option("--seed", config.seed, "seed of every random choice")->capture_default_str();
  app.add_option("--minutes", config.minutes, "virtual minutes")->capture_default_str();
  app.add_option("--joiners", config.joiners, "share of the peers that join during the first half")
    ->capture_default_str();
  app.add_option("--churn", config.churn_per_minute,
                 "share of the peers that crash per minute (each restarts)")
    ->capture_default_str();
  app.add_option("--restart-seconds", config.restart_seconds,
                 "a crashed peer's mean downtime")->capture_default_str();
  app.add_option("--chunk", config.chunk_elements, "elements per all-reduce chunk")
    ->capture_default_str();
  app.add_option("--loss", config.loss, "probability that a control message is lost")
    ->capture_default_str();
  app.add_option("--slow", config.slow_fraction, "share of peers computing 4x fewer samples")
    ->capture_default_str();
  app.add_option("--greedy", config.greedy,
                 "share of peers that claim 1000x their samples (averaging.max_weight_ratio "
                 "bounds them)")
    ->capture_default_str();
  app.add_option("--group-size", config.group_size, "averaging.group_size")->capture_default_str();
  app.add_option("--liars", config.liars,
                 "share of peers that, as reducers, send everyone a negated result")
    ->capture_default_str();
  app.add_option("--audit", config.audit_probability,
                 "averaging.audit_probability: signed chunks, evidence and audits (0: off)")
    ->capture_default_str();
  app.add_option("--length", config.vector_length, "elements each peer contributes")
    ->capture_default_str();
  app.add_flag("--trace", config.trace, "print every peer's phase changes");
  app.add_flag("--partition", partition, "cut a third of the peers off for the middle fifth");
  app.add_option("--cut-links", config.cut_links,
                 "share of peer pairs whose own link is cut for the middle fifth (a partial "
                 "partition: both still reach everyone else)")
    ->capture_default_str();
  app.add_flag("--figures", run_figures, "N = 10, 100, 1000 under 10% churn per minute");
  CLI11_PARSE(app, argc, argv);
  config.partition = partition;
  if (config.peers == 0 || config.minutes <= 0) {
    std::fprintf(stderr, "--peers and --minutes must be positive\n");
    return 2;
  }
  return run_figures ? figures(config) : run_one(config, true);
}
