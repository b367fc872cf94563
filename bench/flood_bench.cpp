// ddactor_flood_bench: what a garbage flood costs a peer. Two real ddactor peers train a tiny DiT
// on loopback for --seconds, twice in one run: undisturbed, then with --attackers threads
// hammering peer 0's network.listen port the whole time, each connection one of: 1 MiB of random
// bytes, an HTTP request, a frame header announcing 4 GiB, or a silent connection held open for a
// second. Printed per phase: the epochs peer 0 reached, its peak resident memory (VmHWM, polled),
// the smallest swarm it saw once both had met (ddactor_swarm_peers: 2 means its link to the
// other peer stayed up), the attack connections made and those its gateway refused
// (ddactor_auth_failures_total), and the ratios flood / quiet. Nothing is asserted.
//
//   ddactor_flood_bench [--seconds 30] [--attackers 8] [--json PATH] [--keep-logs DIR]
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <httplib.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <limits>
#include <optional>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "bench/spawned_process.hpp"

namespace {

using namespace ddactor;
using namespace std::chrono_literals;
using json = nlohmann::json;
using clock_type = std::chrono::steady_clock;

struct settings {
  std::string binary = DDACTOR_BINARY;
  double seconds = 30;
  int attackers = 8;
  std::string json_path;
  std::string keep_logs;
};

struct phase_outcome {
  std::string name;
  int64_t epochs = 0;
  double peak_rss_mb = 0;
  double min_swarm = std::numeric_limits<double>::infinity();  // once both peers had met
  double auth_failures = 0;
  uint64_t attack_connections = 0;
  std::string problem;
};

std::string config_text(double seconds) {
  return "[run]\nname = \"flood-bench\"\nthreads = 1\n"
         "[model]\nhidden_size = 32\ndepth = 1\nnum_heads = 2\npatch_size = 7\n"
         "[data]\nbatch_size = 16\nprefetch = 2\n"
         "[train]\nsteps = 1000000\ntarget_batch_size = 64\nwarmup_steps = 2\nlog_every = 1\n"
         "checkpoint_every = 1000000\nsample_every = 0\nmax_seconds = " +
         std::to_string(seconds) +
         "\n[sample]\nsteps = 1\nper_class = 1\n"
         "[network]\nwait_for_peers = 2\n";
}

// VmHWM of `pid` in MB (0 when it is gone).
double peak_rss_mb(pid_t pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(status, line))
    if (line.rfind("VmHWM:", 0) == 0)
      return std::stod(line.substr(6)) / 1024.0;
  return 0;
}

// The sum of a metric family's samples in a Prometheus text page (nothing when absent).
std::optional<double> metric_sum(const std::string& page, const std::string& name) {
  std::optional<double> sum;
  std::regex sample("^" + name + "(\\{[^}]*\\})? ([0-9.eE+-]+)$");
  size_t begin = 0;
  while (begin < page.size()) {
    auto end = page.find('\n', begin);
    if (end == std::string::npos)
      end = page.size();
    std::smatch match;
    const std::string line = page.substr(begin, end - begin);
    if (std::regex_match(line, match, sample))
      sum = sum.value_or(0) + std::stod(match[2].str());
    begin = end + 1;
  }
  return sum;
}

int64_t last_epoch(const std::string& log) {
  static const std::regex line("epoch ([0-9]+)/");
  int64_t last = 0;
  for (auto it = std::sregex_iterator(log.begin(), log.end(), line); it != std::sregex_iterator();
       ++it)
    last = std::max<int64_t>(last, std::stoll((*it)[1].str()));
  return last;
}

// One attacker: connections to 127.0.0.1:port until `stop`, each with the next kind of garbage.
void attack(uint16_t port, int seed, const std::atomic<bool>& stop,
            std::atomic<uint64_t>& connections) {
  std::vector<char> noise(1 << 20);
  for (size_t i = 0; i < noise.size(); ++i)
    noise[i] = static_cast<char>(((i + static_cast<size_t>(seed)) * 2654435761u) >> 13);
  const std::string http = "GET /metrics HTTP/1.1\r\nHost: peer\r\n\r\n";
  std::vector<char> huge(72, 0);  // a header that announces a 4 GiB payload
  for (int i = 4; i < 8; ++i)
    huge[static_cast<size_t>(i)] = static_cast<char>(0xff);
  for (int k = seed; !stop; ++k) {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
      continue;
    timeval timeout{1, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(port);
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0) {
      ++connections;
      switch (k % 4) {
        case 0: ::send(fd, noise.data(), noise.size(), MSG_NOSIGNAL); break;
        case 1: ::send(fd, http.data(), http.size(), MSG_NOSIGNAL); break;
        case 2: ::send(fd, huge.data(), huge.size(), MSG_NOSIGNAL); break;
        default:
          for (int i = 0; i < 10 && !stop; ++i)  // silent, held open for a second
            std::this_thread::sleep_for(100ms);
      }
    }
    ::close(fd);
  }
}

phase_outcome run_phase(const settings& s, const std::filesystem::path& root, bool flood) {
  phase_outcome out;
  out.name = flood ? "flood" : "quiet";
  const auto dir = root / out.name;
  std::filesystem::create_directories(dir);
  const auto config = dir / "swarm.toml";
  std::ofstream(config) << config_text(s.seconds);
  const auto port = free_loopback_port();
  const auto metrics_port = free_loopback_port();
  std::vector<std::unique_ptr<spawned_process>> peers;
  for (int i = 0; i < 2; ++i) {
    std::vector<std::string> args{"--config", config.string(), "--set",
                                  "run.dir=\"" + (dir / ("peer" + std::to_string(i))).string() +
                                    "\""};
    if (i == 0)
      args.insert(args.end(), {"--set", "monitoring.listen=\"127.0.0.1:" +
                                          std::to_string(metrics_port) + "\""});
    auto network = loopback_swarm_args(i, port);
    args.insert(args.end(), network.begin(), network.end());
    peers.push_back(std::make_unique<spawned_process>(
      s.binary, args, dir / ("peer" + std::to_string(i) + ".log")));
    if (i == 0)
      std::this_thread::sleep_for(500ms);
  }
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> connections{0};
  std::vector<std::thread> attackers;
  if (flood)
    for (int a = 0; a < s.attackers; ++a)
      attackers.emplace_back(attack, port, a, std::cref(stop), std::ref(connections));
  httplib::Client client("127.0.0.1", metrics_port);
  client.set_connection_timeout(1);
  client.set_read_timeout(2);
  bool met = false;
  const auto deadline = clock_type::now() + std::chrono::duration<double>(s.seconds + 90);
  while (peers[0]->running() && clock_type::now() < deadline) {
    out.peak_rss_mb = std::max(out.peak_rss_mb, peak_rss_mb(peers[0]->pid()));
    if (auto page = client.Get("/metrics"); page && page->status == 200) {
      if (auto swarm = metric_sum(page->body, "ddactor_swarm_peers")) {
        met = met || *swarm >= 2;
        if (met)
          out.min_swarm = std::min(out.min_swarm, *swarm);
      }
      if (auto failures = metric_sum(page->body, "ddactor_auth_failures_total"))
        out.auth_failures = *failures;
    }
    std::this_thread::sleep_for(250ms);
  }
  stop = true;
  for (auto& t : attackers)
    t.join();
  out.attack_connections = connections;
  for (size_t i = 0; i < peers.size(); ++i) {
    auto code = peers[i]->wait_for(30s);
    if (code != 0 && out.problem.empty())
      out.problem = "peer " + std::to_string(i) + ": " + peers[i]->describe_exit(code);
  }
  out.epochs = last_epoch(peers[0]->output());
  if (!met && out.problem.empty())
    out.problem = "the two peers never met (log: " + peers[0]->log_file().string() + ")";
  return out;
}

} // namespace

int main(int argc, char** argv) {
  CLI::App app{"What a garbage flood on its listening port costs a training peer"};
  settings s;
  app.add_option("--ddactor", s.binary, "the ddactor binary")->capture_default_str();
  app.add_option("--seconds", s.seconds, "training time per phase (train.max_seconds)")
    ->capture_default_str();
  app.add_option("--attackers", s.attackers, "threads connecting with garbage")
    ->capture_default_str();
  app.add_option("--json", s.json_path, "write the figures to this JSON file");
  app.add_option("--keep-logs", s.keep_logs, "keep runs and logs in this folder");
  CLI11_PARSE(app, argc, argv);
  const auto root = s.keep_logs.empty() ? std::filesystem::temp_directory_path() /
                                            ("ddactor_flood_bench_" + std::to_string(::getpid()))
                                        : std::filesystem::path(s.keep_logs);
  std::printf("two peers on loopback, a tiny DiT, %.0f s of training per phase; the flood: %d "
              "threads connecting to peer 0's network.listen with 1 MiB of noise, an HTTP "
              "request, a 4 GiB frame header or silence\n",
              s.seconds, s.attackers);
  std::fflush(stdout);
  std::vector<phase_outcome> phases{run_phase(s, root, false), run_phase(s, root, true)};
  std::printf("\n%-6s %8s %14s %14s %14s %14s\n", "phase", "epochs", "peak RSS MB",
              "min swarm", "attacks", "auth failures");
  json table = json::array();
  bool problems = false;
  for (const auto& p : phases) {
    std::printf("%-6s %8lld %14.1f %14.0f %14llu %14.0f%s\n", p.name.c_str(),
                static_cast<long long>(p.epochs), p.peak_rss_mb, p.min_swarm,
                static_cast<unsigned long long>(p.attack_connections), p.auth_failures,
                p.problem.empty() ? "" : ("  PROBLEM: " + p.problem).c_str());
    problems = problems || !p.problem.empty();
    table.push_back({{"phase", p.name}, {"epochs", p.epochs}, {"peak_rss_mb", p.peak_rss_mb},
                     {"min_swarm", p.min_swarm}, {"attack_connections", p.attack_connections},
                     {"auth_failures", p.auth_failures}, {"problem", p.problem}});
  }
  const auto& quiet = phases[0];
  const auto& flood = phases[1];
  const double epochs_ratio =
    quiet.epochs > 0 ? static_cast<double>(flood.epochs) / static_cast<double>(quiet.epochs) : 0;
  const double rss_ratio = quiet.peak_rss_mb > 0 ? flood.peak_rss_mb / quiet.peak_rss_mb : 0;
  std::printf("flood / quiet: epochs %.3f, peak RSS %.3f; links up throughout: %s\n", epochs_ratio,
              rss_ratio, flood.min_swarm >= 2 ? "yes" : "NO");
  if (!s.json_path.empty()) {
    std::ofstream(s.json_path) << json{{"phases", table},
                                       {"epochs_ratio", epochs_ratio},
                                       {"peak_rss_ratio", rss_ratio}}
                                    .dump(2)
                               << "\n";
  }
  if (s.keep_logs.empty() && !problems)
    std::filesystem::remove_all(root);
  else
    std::printf("runs and logs in %s\n", root.string().c_str());
  return problems ? 1 : 0;
}
