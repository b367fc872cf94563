// ddactor_allreduce_bench: how close the swarm's butterfly all-reduce comes to the bandwidth
// lower bound, and what compression buys on a slow link. It starts n ddactor_allreduce_peer
// processes (membership + averager, the actors a training peer averages with) and times rounds:
//
//   sizes    for n in --peers (2, 4, 8), one --megabytes vector (100 MB = 25M floats) averaged
//            --rounds times, (a) on loopback and (b) in a network lab (bench/netlab) where every
//            host's upload and download are shaped to --rate-mbit (100 Mbit/s) with --delay-ms
//            (50 ms) one-way delay. Per n: the median round time (a round ends when its slowest
//            member has the result), the lower bound 2(n-1)/n * size / link rate (what each peer
//            must send and receive), and their ratio. The loopback link rate is measured in the
//            same run: raw TCP between two processes (--raw-megabytes), with the CPU its sender
//            and receiver spend: the most bytes a peer could send per CPU-second over raw TCP,
//            against which the all-reduce's bytes per CPU-second are set. Aim on shaped links:
//            ratio <= 1.25.
//   hetero   (--hetero) host 0's link at --slow-mbit (20), the others' at --rate-mbit: equal
//            parts, parts cut by declared rates and by measured ones, against the bandwidth
//            bound of the best cut (runtime/allreduce/bandwidth_shares.hpp).
//   sealing  (--sealing) per mode and n, the same rounds over plain CAF links, over sealed
//            ones (runtime/secure/link_gateway: handshake, ChaCha20-Poly1305), and sealed with
//            signed chunks, evidence kept and audits at --audit-probability (what a training
//            peer runs): round time and CPU seconds per peer and round, against plain. Aim on
//            shaped links: <= 1.05.
//   nat      (--nat) 4 peers, hosts 2 and 3 behind NAT routers (bench/netlab): round time
//            against the bound of a cut where they reduce nothing; then a sealed stream between
//            two NATed hosts through a relay, one way and both ways, against a direct link.
//   codecs   (--codec-sweep) shaped links, n = 4, a DiT-S/2-sized vector (its real tensor layout,
//            33M floats; --codec-elements overrides), each codec of --codecs: round time and
//            bytes on the wire against float32's. Aim: int8 <= 0.35x of float32's time.
//
// Nothing is asserted; the figures are printed as a table (and written to --json PATH). Where a
// lab cannot be built (not root, no namespaces) its part prints "skipped: <reason>".
//
//   ddactor_allreduce_bench [--peers 2,4,8] [--megabytes 100] [--rounds 3] [--modes loopback,shaped]
//                           [--rate-mbit 100] [--delay-ms 50] [--raw-megabytes 500] [--json PATH]
//   ddactor_allreduce_bench --codec-sweep [--codecs none,fp16,bf16,int8,topk,adaptive,int8+zstd1]
//                           [--codec-elements N] [--codec-rounds 2]
//   ddactor_allreduce_bench --sealing [--peers 2,4] [--modes loopback,shaped] [--megabytes 100]
//   ddactor_allreduce_bench --nat [--megabytes 100] [--rounds 3] [--rate-mbit 100] [--delay-ms 50]
//   ddactor_allreduce_bench --hetero [--hetero-peers 4] [--slow-mbit 20] [--rate-mbit 100]
//                           [--megabytes 25] [--rounds 4]
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "bench/netlab/netlab.hpp"
#include "bench/spawned_process.hpp"
#include "runtime/allreduce/bandwidth_shares.hpp"
#include "runtime/secure/link_gateway.hpp"

namespace {

using namespace ddactor;
using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;
using json = nlohmann::json;

constexpr uint16_t lab_peer_port = 7000;
constexpr uint16_t lab_relay_port = 7100;
// The raw TCP baseline's receivers, and their relays.
constexpr uint16_t lab_raw_port = 7200;
constexpr uint16_t lab_raw_relay_port = 7300;

struct settings {
  std::string peer_binary = DDACTOR_ALLREDUCE_PEER_BINARY;
  std::vector<int> peers{2, 4, 8};
  double megabytes = 100;
  int rounds = 3;
  std::vector<std::string> modes{"loopback", "shaped"};
  double rate_mbit = 100;
  double delay_ms = 50;
  std::string delay_mode = "automatic";
  double raw_megabytes = 500;
  bool raw_baseline = true;  // raw TCP in the all-reduce's traffic pattern, shaped links
  bool codec_sweep = false;
  std::vector<std::string> codecs{"none", "fp16", "bf16", "int8", "topk", "adaptive", "int8+zstd1"};
  int64_t codec_elements = 0;  // 0: the DiT-S/2 layout
  int codec_peers = 4;
  int codec_rounds = 2;
  size_t chunk_elements = 262144;
  bool hetero = false;        // the heterogeneous-links sweep instead
  bool sealing = false;       // plain vs sealed links (the gateway) instead
  double audit_probability = 0.1;  // of the signed runs in the sealing sweep
  bool nat = false;           // peers behind NAT routers and relays instead
  bool internet = false;      // 8 peers on mixed-latency, lossy, asymmetric links instead
  double internet_megabytes = 25;
  std::vector<std::string> internet_links{"sealed", "plain"};
  double internet_queue_ms = 100;  // a home router's upload buffer
  int hetero_peers = 4;
  double slow_mbit = 20;      // host 0's link in that sweep
  std::vector<std::string> peer_flags;  // passed to every peer as they are
  std::string json_path;
  std::string keep_logs;
};

// One round as one peer reported it.
struct peer_round {
  int round = 0;
  int group_size = 0;
  bool averaged = false;
  bool failed = false;
  double seconds = 0;
  double wall_seconds = 0;
  uint64_t bytes_sent = 0;
  uint64_t bytes_received = 0;
  int restarts = 0;
  double cpu_seconds = 0;
  std::string checksum;
  std::string detail;
};

struct swarm_run {
  int n = 0;
  std::vector<std::vector<peer_round>> rounds;  // [peer][round]
  std::vector<int> exit_codes;
  std::string problem;  // empty when every peer finished every round in one full group
  // Per round: slowest member's all-reduce time and wall time, mean bytes sent per peer.
  std::vector<double> round_seconds, round_wall_seconds;
  double median_seconds = 0, median_wall_seconds = 0;
  double bytes_sent_per_peer = 0;
  double cpu_seconds_per_peer_round = 0;  // mean over peers and rounds
  // Membership warnings in the peers' logs: a member suspected or removed for silence while
  // the round's data kept its connection busy.
  int suspicions = 0;
  int removals = 0;
};

double median(std::vector<double> v) {
  if (v.empty())
    return 0;
  std::sort(v.begin(), v.end());
  auto m = v.size() / 2;
  return v.size() % 2 ? v[m] : 0.5 * (v[m - 1] + v[m]);
}

std::vector<peer_round> parse_rounds(const std::string& log) {
  std::vector<peer_round> out;
  std::istringstream lines(log);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.empty() || line[0] != '{')
      continue;
    auto j = json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.contains("round"))
      continue;
    peer_round r;
    r.round = j.value("round", 0);
    r.group_size = j.value("group_size", 0);
    r.averaged = j.value("averaged", false);
    r.failed = j.value("failed", false);
    r.seconds = j.value("seconds", 0.0);
    r.wall_seconds = j.value("wall_seconds", 0.0);
    r.bytes_sent = j.value("bytes_sent", uint64_t{0});
    r.bytes_received = j.value("bytes_received", uint64_t{0});
    r.restarts = j.value("restarts", 0);
    r.cpu_seconds = j.value("cpu_seconds", 0.0);
    r.checksum = j.value("checksum", std::string());
    r.detail = j.value("detail", std::string());
    out.push_back(r);
  }
  return out;
}

std::string tail_of(const std::string& text, size_t lines) {
  size_t pos = text.size();
  for (size_t k = 0; k <= lines && pos > 0; ++k)
    pos = text.rfind('\n', pos - 1);
  return pos == std::string::npos ? text : text.substr(pos + 1);
}

// Where peers run: loopback processes, or hosts of a network lab.
class peer_hosts {
 public:
  virtual ~peer_hosts() = default;
  /// --listen / --announce / --initial-peer for peer i of a swarm whose first peer is peer 0.
  virtual std::vector<std::string> address_flags(int i) = 0;
  virtual void start(int i, const std::vector<std::string>& argv,
                     const std::filesystem::path& log) = 0;
  /// Waits for every started peer up to `deadline`; stops the rest. Returns exit codes (-1:
  /// stopped at the deadline).
  virtual std::vector<int> wait_all(clock_type::time_point deadline) = 0;
};

class loopback_hosts : public peer_hosts {
 public:
  std::vector<std::string> address_flags(int i) override {
    if (i == 0) {
      bootstrap_port_ = free_loopback_port();
      return {"--listen", "127.0.0.1:" + std::to_string(bootstrap_port_)};
    }
    return {"--listen", "127.0.0.1:0", "--initial-peer",
            "127.0.0.1:" + std::to_string(bootstrap_port_)};
  }
  void start(int i, const std::vector<std::string>& argv,
             const std::filesystem::path& log) override {
    std::vector<std::string> args(argv.begin() + 1, argv.end());
    processes_.push_back(std::make_unique<spawned_process>(argv[0], args, log));
  }
  std::vector<int> wait_all(clock_type::time_point deadline) override {
    std::vector<int> codes;
    for (auto& p : processes_) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock_type::now());
      auto code = p->wait_for(std::max(left, std::chrono::milliseconds(0)));
      codes.push_back(code ? *code : -1);
    }
    processes_.clear();  // kills what is left
    return codes;
  }

 private:
  uint16_t bootstrap_port_ = 0;
  std::vector<std::unique_ptr<spawned_process>> processes_;
};

class lab_hosts : public peer_hosts {
 public:
  lab_hosts(int hosts, const netlab_options& options) : lab_(hosts, options) {
    for (int i = 0; i < hosts; ++i) {
      // Nothing connects to a host behind NAT: it gets no relay, and its peer dials out.
      const bool nat = lab_.behind_nat(i);
      dial_ports_.push_back(nat ? 0 : lab_.add_relay(i, lab_peer_port, lab_relay_port));
      raw_dial_ports_.push_back(nat ? 0 : lab_.add_relay(i, lab_raw_port, lab_raw_relay_port));
    }
  }

  /// The links' best for the all-reduce's traffic: raw TCP, every one of hosts 0..n-1 sends
  /// 2 * bytes / n to each other one, all flows at once, through the same relays the peers dial
  /// (so each host sends and receives 2(n-1)/n * bytes, as in a butterfly round). Seconds from
  /// the first connect to the last byte in.
  double raw_exchange_seconds(int n, double bytes);
  netlab& lab() { return lab_; }
  std::vector<std::string> address_flags(int i) override {
    std::vector<std::string> flags{
      "--listen", lab_.address(i) + ":" + std::to_string(lab_peer_port), "--announce",
      lab_.address(i) + ":" + std::to_string(dial_ports_[static_cast<size_t>(i)])};
    if (lab_.behind_nat(i))
      flags = {"--listen", "0.0.0.0:" + std::to_string(lab_peer_port), "--unreachable"};
    if (i > 0)
      flags.insert(flags.end(), {"--initial-peer",
                                 lab_.address(0) + ":" + std::to_string(dial_ports_[0])});
    return flags;
  }
  void start(int i, const std::vector<std::string>& argv,
             const std::filesystem::path& log) override {
    pids_.push_back(lab_.spawn(i, argv, log));
  }
  std::vector<int> wait_all(clock_type::time_point deadline) override {
    std::vector<int> codes;
    for (auto pid : pids_) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock_type::now());
      auto code = lab_.wait(pid, std::max(left, std::chrono::milliseconds(0)));
      codes.push_back(code ? *code : (lab_.stop(pid), -1));
    }
    pids_.clear();
    return codes;
  }

 private:
  netlab lab_;
  std::vector<uint16_t> dial_ports_;
  std::vector<uint16_t> raw_dial_ports_;
  std::vector<pid_t> pids_;
};

sockaddr_in ipv4_address(const std::string& host, uint16_t port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  ::inet_pton(AF_INET, host.c_str(), &a.sin_addr);
  return a;
}

double lab_hosts::raw_exchange_seconds(int n, double bytes) {
  const auto per_flow = static_cast<uint64_t>(2.0 * bytes / n);
  // Sockets belong to the namespace they were made in, whatever thread uses them later.
  std::vector<int> listeners(static_cast<size_t>(n), -1);
  std::vector<std::vector<int>> senders(static_cast<size_t>(n));
  auto close_all = [&] {
    for (int fd : listeners)
      if (fd >= 0)
        ::close(fd);
    for (auto& list : senders)
      for (int fd : list)
        if (fd >= 0)
          ::close(fd);
  };
  for (int i = 0; i < n; ++i) {
    lab_.run_in_host(i, [&] {
      int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      int one = 1;
      ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
      auto a = ipv4_address(lab_.address(i), lab_raw_port);
      if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
          ::listen(fd, 64) != 0)
        throw std::runtime_error(std::string("raw baseline: listen: ") + std::strerror(errno));
      listeners[static_cast<size_t>(i)] = fd;
      for (int j = 0; j < n - 1; ++j)
        senders[static_cast<size_t>(i)].push_back(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    });
  }
  std::atomic<uint64_t> received{0};
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  auto started = clock_type::now();
  for (int j = 0; j < n; ++j)
    threads.emplace_back([&, j] {
      std::vector<std::thread> readers;
      for (int k = 0; k < n - 1; ++k) {
        pollfd p{listeners[static_cast<size_t>(j)], POLLIN, 0};
        if (::poll(&p, 1, 60000) != 1) {
          ++failures;
          break;
        }
        int fd = ::accept(listeners[static_cast<size_t>(j)], nullptr, nullptr);
        if (fd < 0) {
          ++failures;
          break;
        }
        readers.emplace_back([&, fd] {
          timeval limit{60, 0};
          ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
          std::vector<char> buffer(1 << 20);
          while (true) {
            auto got = ::read(fd, buffer.data(), buffer.size());
            if (got <= 0) {
              if (got < 0)
                ++failures;
              break;
            }
            received += static_cast<uint64_t>(got);
          }
          ::close(fd);
        });
      }
      for (auto& r : readers)
        r.join();
    });
  for (int i = 0; i < n; ++i) {
    int k = 0;
    for (int j = 0; j < n; ++j) {
      if (j == i)
        continue;
      int fd = senders[static_cast<size_t>(i)][static_cast<size_t>(k++)];
      auto target = ipv4_address(lab_.address(j), raw_dial_ports_[static_cast<size_t>(j)]);
      threads.emplace_back([&, fd, target] {
        if (::connect(fd, reinterpret_cast<const sockaddr*>(&target), sizeof target) != 0) {
          ++failures;
          return;
        }
        std::vector<char> block(1 << 20, 'x');
        uint64_t left = per_flow;
        while (left > 0) {
          auto sent = ::write(fd, block.data(), std::min<uint64_t>(left, block.size()));
          if (sent <= 0) {
            ++failures;
            return;
          }
          left -= static_cast<uint64_t>(sent);
        }
        ::shutdown(fd, SHUT_WR);
      });
    }
  }
  for (auto& t : threads)
    t.join();
  double seconds = std::chrono::duration<double>(clock_type::now() - started).count();
  close_all();
  if (failures > 0 || received != per_flow * static_cast<uint64_t>(n) * (n - 1))
    throw std::runtime_error("raw baseline: " + std::to_string(failures.load()) +
                             " socket errors, " + std::to_string(received.load()) + " of " +
                             std::to_string(per_flow * n * (n - 1)) + " bytes received");
  return seconds;
}

// Runs n peers for `rounds` rounds with `extra` flags and collects their reports.
swarm_run run_swarm(peer_hosts& hosts, const settings& s, int n, int rounds,
                    const std::vector<std::string>& extra, const std::filesystem::path& logs,
                    std::chrono::seconds timeout,
                    const std::vector<std::vector<std::string>>& per_peer = {}) {
  swarm_run run;
  run.n = n;
  for (int i = 0; i < n; ++i) {
    std::vector<std::string> argv{s.peer_binary, "--peers", std::to_string(n), "--rounds",
                                  std::to_string(rounds), "--seed", std::to_string(1000 + i),
                                  "--chunk-elements", std::to_string(s.chunk_elements)};
    auto address = hosts.address_flags(i);
    argv.insert(argv.end(), address.begin(), address.end());
    argv.insert(argv.end(), extra.begin(), extra.end());
    if (static_cast<size_t>(i) < per_peer.size())
      argv.insert(argv.end(), per_peer[static_cast<size_t>(i)].begin(),
                  per_peer[static_cast<size_t>(i)].end());
    argv.insert(argv.end(), s.peer_flags.begin(), s.peer_flags.end());
    hosts.start(i, argv, logs / ("peer" + std::to_string(i) + ".log"));
    if (i == 0)
      std::this_thread::sleep_for(300ms);  // the bootstrap peer listens before others dial it
  }
  run.exit_codes = hosts.wait_all(clock_type::now() + timeout);
  for (int i = 0; i < n; ++i) {
    auto log = read_whole_file(logs / ("peer" + std::to_string(i) + ".log"));
    run.rounds.push_back(parse_rounds(log));
    for (size_t at = log.find(" suspected: silent"); at != std::string::npos;
         at = log.find(" suspected: silent", at + 1))
      ++run.suspicions;
    for (size_t at = log.find(" of silence;"); at != std::string::npos;
         at = log.find(" of silence;", at + 1))
      ++run.removals;
    if (run.exit_codes[static_cast<size_t>(i)] != 0 && run.problem.empty())
      run.problem = "peer " + std::to_string(i) + " exited with " +
                    std::to_string(run.exit_codes[static_cast<size_t>(i)]) + "; its log ends:\n" +
                    tail_of(log, 8);
  }
  double sent_total = 0, cpu_total = 0;
  size_t sent_count = 0;
  for (int r = 0; r < rounds; ++r) {
    double slowest = 0, slowest_wall = 0;
    std::string checksum;
    for (int i = 0; i < n; ++i) {
      const auto& reports = run.rounds[static_cast<size_t>(i)];
      if (static_cast<int>(reports.size()) <= r) {
        if (run.problem.empty())
          run.problem = "peer " + std::to_string(i) + " reported no round " + std::to_string(r);
        continue;
      }
      const auto& x = reports[static_cast<size_t>(r)];
      slowest = std::max(slowest, x.seconds);
      slowest_wall = std::max(slowest_wall, x.wall_seconds);
      sent_total += static_cast<double>(x.bytes_sent);
      cpu_total += x.cpu_seconds;
      ++sent_count;
      if (run.problem.empty() && (x.failed || !x.averaged || x.group_size != n))
        run.problem = "round " + std::to_string(r) + " of peer " + std::to_string(i) +
                      ": group of " + std::to_string(x.group_size) +
                      (x.failed ? ", failed: " + x.detail : (x.averaged ? "" : ", alone"));
      if (run.problem.empty() && x.restarts > 0)
        run.problem = "round " + std::to_string(r) + " restarted " + std::to_string(x.restarts) +
                      " times on peer " + std::to_string(i);
      if (checksum.empty())
        checksum = x.checksum;
      else if (run.problem.empty() && checksum != x.checksum)
        run.problem = "round " + std::to_string(r) + ": members ended with different results";
    }
    run.round_seconds.push_back(slowest);
    run.round_wall_seconds.push_back(slowest_wall);
  }
  run.median_seconds = median(run.round_seconds);
  run.median_wall_seconds = median(run.round_wall_seconds);
  run.bytes_sent_per_peer = sent_count ? sent_total / static_cast<double>(sent_count) : 0;
  run.cpu_seconds_per_peer_round = sent_count ? cpu_total / static_cast<double>(sent_count) : 0;
  return run;
}

// Raw TCP over loopback between two processes (a forked child sends, this process receives):
// the rate from accept to the last byte, and the CPU (user and system) its sender and receiver
// spend: what any peer pays at least to move bytes.
struct loopback_tcp {
  double bytes_per_second = 0;
  double sender_cpu_seconds = 0;
  double receiver_cpu_seconds = 0;
  // Bytes a peer could send per CPU-second if it also received as many, as in a round.
  double bytes_sent_per_cpu_second(double bytes) const {
    return bytes / (sender_cpu_seconds + receiver_cpu_seconds);
  }
};

double cpu_seconds(const rusage& usage) {
  auto seconds = [](const timeval& t) { return t.tv_sec + t.tv_usec / 1e6; };
  return seconds(usage.ru_utime) + seconds(usage.ru_stime);
}

loopback_tcp measure_loopback_tcp(uint64_t bytes) {
  int server = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  if (server < 0 || ::bind(server, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::listen(server, 1) != 0 ||
      ::getsockname(server, reinterpret_cast<sockaddr*>(&addr), &len) != 0)
    throw std::runtime_error(std::string("loopback TCP server: ") + std::strerror(errno));
  pid_t child = ::fork();
  if (child < 0)
    throw std::runtime_error(std::string("fork: ") + std::strerror(errno));
  if (child == 0) {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0)
      ::_exit(1);
    std::vector<char> block(1 << 20, 'x');
    uint64_t left = bytes;
    while (left > 0) {
      auto n = ::write(fd, block.data(), std::min<uint64_t>(left, block.size()));
      if (n <= 0)
        ::_exit(1);
      left -= static_cast<uint64_t>(n);
    }
    ::close(fd);
    ::_exit(0);
  }
  int fd = ::accept(server, nullptr, nullptr);
  rusage receiver_before{};
  ::getrusage(RUSAGE_THREAD, &receiver_before);
  auto started = clock_type::now();
  std::vector<char> buffer(1 << 20);
  uint64_t got = 0;
  while (got < bytes) {
    auto n = ::read(fd, buffer.data(), buffer.size());
    if (n <= 0)
      break;
    got += static_cast<uint64_t>(n);
  }
  double seconds = std::chrono::duration<double>(clock_type::now() - started).count();
  rusage receiver_after{};
  ::getrusage(RUSAGE_THREAD, &receiver_after);
  ::close(fd);
  ::close(server);
  rusage sender{};
  int status = 0;
  ::wait4(child, &status, 0, &sender);
  if (got < bytes)
    throw std::runtime_error("loopback TCP: the sender stopped early");
  loopback_tcp out;
  out.bytes_per_second = static_cast<double>(bytes) / seconds;
  out.sender_cpu_seconds = cpu_seconds(sender);
  out.receiver_cpu_seconds = cpu_seconds(receiver_after) - cpu_seconds(receiver_before);
  return out;
}

netlab_options lab_options(const settings& s) {
  netlab_options o;
  o.rate_mbit = s.rate_mbit;
  o.one_way_delay_ms = s.delay_ms;
  o.delay_mode = s.delay_mode == "relay"    ? netlab_delay_mode::relay
                 : s.delay_mode == "kernel" ? netlab_delay_mode::kernel
                                            : netlab_delay_mode::automatic;
  return o;
}

std::string describe_lab(const netlab& lab, const settings& s) {
  char text[200];
  std::snprintf(text, sizeof text, "%.0f Mbit/s up and down per host, %.0f ms one-way delay (%s)",
                s.rate_mbit, s.delay_ms,
                lab.kernel_delay() ? "netem" : "latency relays: no netem in this kernel");
  return text;
}

std::chrono::seconds run_timeout(double lower_bound_seconds, int rounds) {
  return std::chrono::seconds(static_cast<int64_t>(150 + rounds * (30 + 4 * lower_bound_seconds)));
}

json run_to_json(const swarm_run& run) {
  json rounds = json::array();
  for (size_t r = 0; r < run.round_seconds.size(); ++r)
    rounds.push_back({{"seconds", run.round_seconds[r]}, {"wall_seconds", run.round_wall_seconds[r]}});
  json peers = json::array();
  for (const auto& reports : run.rounds) {
    json list = json::array();
    for (const auto& x : reports)
      list.push_back({{"round", x.round}, {"group_size", x.group_size}, {"seconds", x.seconds},
                      {"wall_seconds", x.wall_seconds}, {"bytes_sent", x.bytes_sent},
                      {"bytes_received", x.bytes_received}, {"restarts", x.restarts},
                      {"failed", x.failed}, {"averaged", x.averaged}});
    peers.push_back(list);
  }
  return {{"n", run.n},
          {"median_round_seconds", run.median_seconds},
          {"median_wall_seconds", run.median_wall_seconds},
          {"bytes_sent_per_peer", run.bytes_sent_per_peer},
          {"cpu_seconds_per_peer_round", run.cpu_seconds_per_peer_round},
          {"rounds", rounds},
          {"per_peer", peers},
          {"suspicions", run.suspicions},
          {"removals", run.removals},
          {"problem", run.problem}};
}

std::string load_average() {
  std::ifstream in("/proc/loadavg");
  std::string one, five, fifteen;
  in >> one >> five >> fifteen;
  return one + " " + five + " " + fifteen;
}

void print_run_line(const std::string& label, const swarm_run& run) {
  std::printf("  %-12s n=%d: rounds", label.c_str(), run.n);
  for (double t : run.round_seconds)
    std::printf(" %.2f", t);
  std::printf(" s, %.2f CPU s per peer and round", run.cpu_seconds_per_peer_round);
  if (run.suspicions > 0 || run.removals > 0)
    std::printf(", membership: %d suspicions, %d removals", run.suspicions, run.removals);
  std::printf("%s%s\n", run.problem.empty() ? "" : "\n    PROBLEM: ", run.problem.c_str());
  std::fflush(stdout);
}

// Part 1: round time against the bandwidth lower bound, per n, per mode.
json size_sweep(const settings& s, const std::filesystem::path& logs) {
  json out = json::object();
  const auto elements = static_cast<int64_t>(s.megabytes * 1e6 / 4);
  const double size_bytes = static_cast<double>(elements) * 4;
  std::printf("all-reduce of %.1f MB (%lld floats), %d rounds per n; round time = slowest member, "
              "median over rounds; load average at start %s\n",
              size_bytes / 1e6, static_cast<long long>(elements), s.rounds,
              load_average().c_str());
  out["load_average_start"] = load_average();
  struct row {
    std::string mode;
    swarm_run run;
    double bound = 0;
    double raw = 0;  // raw TCP in the same traffic pattern (shaped links), 0: not measured
  };
  std::vector<row> rows;
  std::vector<std::string> notes;
  double raw_sent_per_cpu = 0; // GB per CPU-s of raw TCP over loopback, 0: not measured
  for (const auto& mode : s.modes) {
    std::unique_ptr<peer_hosts> hosts;
    lab_hosts* lab = nullptr;
    double link_bytes_per_second = 0;
    if (mode == "loopback") {
      const auto raw_bytes = static_cast<uint64_t>(s.raw_megabytes * 1e6);
      const loopback_tcp raw = measure_loopback_tcp(raw_bytes);
      link_bytes_per_second = raw.bytes_per_second;
      raw_sent_per_cpu = raw.bytes_sent_per_cpu_second(static_cast<double>(raw_bytes)) / 1e9;
      char note[400];
      std::snprintf(note, sizeof note,
                    "loopback link rate: raw TCP between two processes, %.0f MB: %.1f MB/s "
                    "(measured now; the lower bound below uses it); %.2f CPU s to send, %.2f to "
                    "receive: a peer that receives as many bytes as it sends can send at most "
                    "%.2f GB per CPU-s over raw TCP",
                    s.raw_megabytes, raw.bytes_per_second / 1e6, raw.sender_cpu_seconds,
                    raw.receiver_cpu_seconds, raw_sent_per_cpu);
      notes.push_back(note);
      std::printf("%s\n", note);
      out["loopback_tcp_bytes_per_second"] = raw.bytes_per_second;
      out["loopback_tcp_gb_sent_per_cpu_second"] = raw_sent_per_cpu;
      hosts = std::make_unique<loopback_hosts>();
    } else if (mode == "shaped") {
      int most = *std::max_element(s.peers.begin(), s.peers.end());
      try {
        netlab::cleanup_stale("ddl");
        auto made = std::make_unique<lab_hosts>(most, lab_options(s));
        std::printf("shaped: %s\n", describe_lab(made->lab(), s).c_str());
        out["shaped_link"] = describe_lab(made->lab(), s);
        lab = made.get();
        hosts = std::move(made);
      } catch (const netlab_unavailable& e) {
        std::printf("shaped links: skipped: %s\n", e.what());
        out["shaped_skipped"] = e.what();
        continue;
      }
      link_bytes_per_second = s.rate_mbit * 1e6 / 8;
    } else {
      std::printf("unknown mode '%s' (loopback, shaped): skipped\n", mode.c_str());
      continue;
    }
    std::fflush(stdout);
    for (int n : s.peers) {
      double bound = 2.0 * (n - 1) / n * size_bytes / link_bytes_per_second;
      auto dir = logs / (mode + "-n" + std::to_string(n));
      double raw = 0;
      if (lab != nullptr && s.raw_baseline) {
        try {
          raw = lab->raw_exchange_seconds(n, size_bytes);
          std::printf("  raw TCP      n=%d: %.2f s to move the same bytes in the same pattern\n",
                      n, raw);
        } catch (const std::exception& e) {
          std::printf("  raw TCP      n=%d: failed: %s\n", n, e.what());
        }
      }
      auto run = run_swarm(*hosts, s, n, s.rounds, {"--elements", std::to_string(elements)}, dir,
                           run_timeout(bound, s.rounds));
      print_run_line(mode, run);
      rows.push_back({mode, std::move(run), bound, raw});
    }
  }
  std::printf("\n%-8s %3s %9s %9s %9s %7s %9s %8s %13s %9s %7s %9s\n", "mode", "n", "round s",
              "wall s", "bound s", "ratio", "raw TCP s", "vs raw", "MB sent/peer", "bound MB",
              "CPU s", "GB/CPU-s");
  json table = json::array();
  std::vector<std::string> met, missed, against_raw_cpu;
  for (const auto& r : rows) {
    double ratio = r.bound > 0 ? r.run.median_seconds / r.bound : 0;
    double bound_mb = 2.0 * (r.run.n - 1) / r.run.n * size_bytes / 1e6;
    double vs_raw = r.raw > 0 ? r.run.median_seconds / r.raw : 0;
    // Bytes a peer sends per CPU-second it spends: where this is below the link's rate, the CPU,
    // not the link, bounds a round (aim on loopback: >= 1 GB per CPU-second).
    double sent_per_cpu = r.run.cpu_seconds_per_peer_round > 0
                            ? r.run.bytes_sent_per_peer / 1e9 / r.run.cpu_seconds_per_peer_round
                            : 0;
    std::printf("%-8s %3d %9.2f %9.2f %9.3f %7.2f %9s %8s %13.1f %9.1f %7.2f %9.2f%s\n",
                r.mode.c_str(),
                r.run.n, r.run.median_seconds, r.run.median_wall_seconds, r.bound, ratio,
                r.raw > 0 ? std::to_string(r.raw).substr(0, 5).c_str() : "-",
                r.raw > 0 ? std::to_string(vs_raw).substr(0, 5).c_str() : "-",
                r.run.bytes_sent_per_peer / 1e6, bound_mb, r.run.cpu_seconds_per_peer_round,
                sent_per_cpu, r.run.problem.empty() ? "" : "  (!)");
    auto j = run_to_json(r.run);
    j["gb_sent_per_cpu_second"] = sent_per_cpu;
    j["mode"] = r.mode;
    j["lower_bound_seconds"] = r.bound;
    j["ratio"] = ratio;
    j["raw_tcp_seconds"] = r.raw;
    j["vs_raw_tcp"] = vs_raw;
    if (r.mode == "loopback" && raw_sent_per_cpu > 0) {
      j["of_raw_tcp_gb_sent_per_cpu_second"] = sent_per_cpu / raw_sent_per_cpu;
      against_raw_cpu.push_back("n=" + std::to_string(r.run.n) + " " +
                                std::to_string(sent_per_cpu / raw_sent_per_cpu).substr(0, 4));
    }
    table.push_back(j);
    if (r.mode == "shaped")
      (ratio <= 1.25 && r.run.problem.empty() ? met : missed).push_back(std::to_string(r.run.n));
  }
  auto join = [](const std::vector<std::string>& v) {
    std::string s;
    for (const auto& x : v)
      s += (s.empty() ? "n=" : ", n=") + x;
    return s;
  };
  if (!against_raw_cpu.empty()) {
    std::string ratios;
    for (const auto& r : against_raw_cpu)
      ratios += (ratios.empty() ? "" : ", ") + r;
    std::printf("loopback GB/CPU-s against raw TCP's %.2f (same run): %s\n", raw_sent_per_cpu,
                ratios.c_str());
  }
  if (!met.empty() || !missed.empty())
    std::printf("aim: round time <= 1.25 x lower bound on shaped links: %s%s%s%s\n",
                missed.empty() ? "met" : "NOT met",
                met.empty() ? "" : (" (met for " + join(met) + ")").c_str(),
                missed.empty() ? "" : (" (missed for " + join(missed) + ")").c_str(),
                "");
  std::printf("(round s: all-reduce from the group assignment to the result, slowest member; wall "
              "s: the request incl. matchmaking; ratio = round s / bound s; raw TCP s: every "
              "host sends the same bytes to the same hosts over plain sockets through the same "
              "links; CPU s: per peer and round; GB/CPU-s: bytes a peer sends per CPU-second it "
              "spends; (!): a round was not one full group or failed, "
              "see PROBLEM above)\n");
  out["load_average_end"] = load_average();
  out["sizes"] = table;
  out["aim_met"] = missed.empty() && !met.empty();
  return out;
}

// Part 1b: what sealing links costs, per mode and n: the same rounds plain and sealed.
json sealing_sweep(const settings& s, const std::filesystem::path& logs) {
  json out = json::array();
  const auto elements = static_cast<int64_t>(s.megabytes * 1e6 / 4);
  const double size_bytes = static_cast<double>(elements) * 4;
  std::printf("sealed vs plain links: all-reduce of %.1f MB, %d rounds per run, load average %s\n",
              size_bytes / 1e6, s.rounds, load_average().c_str());
  std::printf("signed: chunks signed, evidence kept, audits with probability %.2f\n",
              s.audit_probability);
  std::printf("%-8s %3s %9s %9s %7s %9s %7s %9s %9s %7s %9s %7s\n", "mode", "n", "plain s",
              "sealed s", "ratio", "signed s", "ratio", "plain CPU", "sealed CPU", "ratio",
              "signed CPU", "ratio");
  for (const auto& mode : s.modes) {
    std::unique_ptr<peer_hosts> hosts;
    double link_bytes_per_second = s.rate_mbit * 1e6 / 8;
    if (mode == "loopback") {
      hosts = std::make_unique<loopback_hosts>();
      link_bytes_per_second = 1e9;
    } else if (mode == "shaped") {
      try {
        netlab::cleanup_stale("ddl");
        hosts = std::make_unique<lab_hosts>(*std::max_element(s.peers.begin(), s.peers.end()),
                                            lab_options(s));
      } catch (const netlab_unavailable& e) {
        std::printf("shaped links: skipped: %s\n", e.what());
        continue;
      }
    } else {
      continue;
    }
    for (int n : s.peers) {
      double bound = 2.0 * (n - 1) / n * size_bytes / link_bytes_per_second;
      std::vector<std::string> flags{"--elements", std::to_string(elements)};
      auto plain = run_swarm(*hosts, s, n, s.rounds, flags,
                             logs / ("sealing-" + mode + "-plain-n" + std::to_string(n)),
                             run_timeout(bound, s.rounds));
      flags.push_back("--sealed");
      auto sealed = run_swarm(*hosts, s, n, s.rounds, flags,
                              logs / ("sealing-" + mode + "-sealed-n" + std::to_string(n)),
                              run_timeout(bound, s.rounds));
      flags.insert(flags.end(), {"--signed", "--audit-probability",
                                 std::to_string(s.audit_probability)});
      auto signed_run = run_swarm(*hosts, s, n, s.rounds, flags,
                                  logs / ("sealing-" + mode + "-signed-n" + std::to_string(n)),
                                  run_timeout(bound, s.rounds));
      auto ratio = [](double a, double b) { return b > 0 ? a / b : 0.0; };
      const double time_ratio = ratio(sealed.median_seconds, plain.median_seconds);
      const double cpu_ratio =
        ratio(sealed.cpu_seconds_per_peer_round, plain.cpu_seconds_per_peer_round);
      const double signed_time_ratio = ratio(signed_run.median_seconds, plain.median_seconds);
      const double signed_cpu_ratio =
        ratio(signed_run.cpu_seconds_per_peer_round, plain.cpu_seconds_per_peer_round);
      std::printf("%-8s %3d %9.2f %9.2f %7.3f %9.2f %7.3f %9.2f %9.2f %7.3f %9.2f %7.3f%s\n",
                  mode.c_str(), n, plain.median_seconds, sealed.median_seconds, time_ratio,
                  signed_run.median_seconds, signed_time_ratio, plain.cpu_seconds_per_peer_round,
                  sealed.cpu_seconds_per_peer_round, cpu_ratio,
                  signed_run.cpu_seconds_per_peer_round, signed_cpu_ratio,
                  plain.problem.empty() && sealed.problem.empty() && signed_run.problem.empty()
                    ? ""
                    : "  (!)");
      std::fflush(stdout);
      out.push_back({{"mode", mode},
                     {"n", n},
                     {"plain", run_to_json(plain)},
                     {"sealed", run_to_json(sealed)},
                     {"signed", run_to_json(signed_run)},
                     {"time_ratio", time_ratio},
                     {"cpu_ratio", cpu_ratio},
                     {"signed_time_ratio", signed_time_ratio},
                     {"signed_cpu_ratio", signed_cpu_ratio}});
    }
  }
  std::printf("(s: median round time, slowest member; CPU: seconds per peer and round, the "
              "gateway's thread included; ratios against plain, measured in this run; aim on "
              "shaped links: <= 1.05)\n");
  return out;
}

// Part 2: codecs on shaped links.
json codec_sweep(const settings& s, const std::filesystem::path& logs) {
  json out = json::object();
  std::unique_ptr<lab_hosts> hosts;
  try {
    netlab::cleanup_stale("ddl");
    hosts = std::make_unique<lab_hosts>(s.codec_peers, lab_options(s));
  } catch (const netlab_unavailable& e) {
    std::printf("codec sweep: skipped: %s\n", e.what());
    out["skipped"] = e.what();
    return out;
  }
  std::vector<std::string> size_flags;
  std::string what;
  if (s.codec_elements > 0) {
    size_flags = {"--elements", std::to_string(s.codec_elements)};
    what = std::to_string(s.codec_elements) + " floats";
  } else {
    size_flags = {"--dit-layout", "S/2"};
    what = "DiT-S/2's parameters (33M floats, its tensor layout)";
  }
  std::printf("codec sweep: n=%d, %s, %s, %d rounds per codec; load average at start %s\n",
              s.codec_peers, what.c_str(), describe_lab(hosts->lab(), s).c_str(), s.codec_rounds,
              load_average().c_str());
  out["load_average_start"] = load_average();
  std::fflush(stdout);
  struct row {
    std::string codec;
    swarm_run run;
  };
  std::vector<row> rows;
  for (const auto& name : s.codecs) {
    std::vector<std::string> flags = size_flags;
    auto plus = name.find("+zstd");
    std::string codec = name.substr(0, plus);
    flags.insert(flags.end(), {"--codec", codec});
    if (plus != std::string::npos)
      flags.insert(flags.end(), {"--zstd-level", name.substr(plus + 5)});
    auto bound = 2.0 * (s.codec_peers - 1) / s.codec_peers * 33e6 * 4 / (s.rate_mbit * 1e6 / 8);
    auto run = run_swarm(*hosts, s, s.codec_peers, s.codec_rounds, flags, logs / ("codec-" + name),
                         run_timeout(bound, s.codec_rounds));
    print_run_line(name, run);
    rows.push_back({name, std::move(run)});
  }
  const row* fp32 = nullptr;
  for (const auto& r : rows)
    if (r.codec == "none")
      fp32 = &r;
  std::printf("\n%-11s %10s %10s %14s %12s %14s %7s\n", "codec", "round s", "wall s",
              "time vs fp32", "MB sent/peer", "bytes vs fp32", "CPU s");
  json table = json::array();
  std::optional<double> int8_ratio;
  for (const auto& r : rows) {
    double time_ratio = fp32 && fp32->run.median_seconds > 0
                          ? r.run.median_seconds / fp32->run.median_seconds
                          : 0;
    double bytes_ratio = fp32 && fp32->run.bytes_sent_per_peer > 0
                           ? r.run.bytes_sent_per_peer / fp32->run.bytes_sent_per_peer
                           : 0;
    std::printf("%-11s %10.2f %10.2f %14.3f %12.1f %14.3f %7.2f%s\n", r.codec.c_str(),
                r.run.median_seconds, r.run.median_wall_seconds, time_ratio,
                r.run.bytes_sent_per_peer / 1e6, bytes_ratio, r.run.cpu_seconds_per_peer_round,
                r.run.problem.empty() ? "" : "  (!)");
    auto j = run_to_json(r.run);
    j["codec"] = r.codec;
    j["time_vs_fp32"] = time_ratio;
    j["bytes_vs_fp32"] = bytes_ratio;
    table.push_back(j);
    if (r.codec == "int8" && fp32)
      int8_ratio = time_ratio;
  }
  if (int8_ratio)
    std::printf("aim: int8 round time <= 0.35 x fp32's: %s (%.3f)\n",
                *int8_ratio <= 0.35 ? "met" : "NOT met", *int8_ratio);
  out["codecs"] = table;
  if (int8_ratio)
    out["int8_aim_met"] = *int8_ratio <= 0.35;
  return out;
}

// Part 3: links that differ. Host 0 at --slow-mbit, the others at --rate-mbit; the same vector
// cut in equal parts (every peer declares the same rate), by the declared rates, and by the
// rates the peers measure from their own rounds (nothing declared: the first round is equal).
// Each against the bandwidth bound of the best partition (bandwidth_shares.hpp).
json heterogeneous_sweep(const settings& s, const std::filesystem::path& logs) {
  json out = json::object();
  const int n = s.hetero_peers;
  netlab_options options = lab_options(s);
  options.host_rate_mbit.assign(static_cast<size_t>(n), s.rate_mbit);
  options.host_rate_mbit[0] = s.slow_mbit;
  std::unique_ptr<lab_hosts> hosts;
  try {
    netlab::cleanup_stale("ddl");
    hosts = std::make_unique<lab_hosts>(n, options);
  } catch (const netlab_unavailable& e) {
    std::printf("heterogeneous links: skipped: %s\n", e.what());
    out["skipped"] = e.what();
    return out;
  }
  const auto elements = static_cast<size_t>(s.megabytes * 1e6 / 4);
  std::vector<double> rates;
  for (int i = 0; i < n; ++i)
    rates.push_back(hosts->lab().rate_mbit(i) * 1e6 / 8);
  const double equal_bound =
    slowest_transfer_seconds(butterfly_partition(elements, static_cast<size_t>(n)), rates, 4);
  const double best_bound = slowest_transfer_seconds(
    partition_by_shares(elements, bandwidth_part_shares(rates)), rates, 4);
  std::printf("heterogeneous links: n=%d, %.0f MB, host 0 at %.0f Mbit/s, the others at %.0f, "
              "%.0f ms one-way; bound of equal parts %.2f s, of the best cut %.2f s; load %s\n",
              n, s.megabytes, s.slow_mbit, s.rate_mbit, s.delay_ms, equal_bound, best_bound,
              load_average().c_str());
  std::fflush(stdout);
  const auto declared = [&](bool true_rates) {
    std::vector<std::vector<std::string>> flags;
    for (int i = 0; i < n; ++i)
      flags.push_back({"--bandwidth",
                       std::to_string(true_rates ? hosts->lab().rate_mbit(i) : s.rate_mbit)});
    return flags;
  };
  struct variant {
    std::string name;
    std::vector<std::vector<std::string>> flags;
  };
  const std::vector<variant> variants = {{"equal parts", declared(false)},
                                         {"declared", declared(true)},
                                         {"measured", {}}};
  // The slow host's heartbeats queue behind its chunks for seconds: membership timeouts well
  // above a round, so that this measures the cut, not false suspicion (issue 16's subject).
  const std::vector<std::string> size_flags{"--elements",          std::to_string(elements),
                                            "--suspect-after",     "60",
                                            "--remove-after",      "120",
                                            "--connection-timeout", "60"};
  std::printf("%-12s %10s %14s %14s\n", "cut", "round s", "vs best bound", "vs equal bound");
  json table = json::array();
  for (const auto& v : variants) {
    auto run = run_swarm(*hosts, s, n, s.rounds, size_flags, logs / ("hetero-" + v.name),
                         run_timeout(equal_bound, s.rounds), v.flags);
    // Measured rates exist from the second round on: the first one is left out of its median.
    auto times = run.round_seconds;
    if (v.name == "measured" && times.size() > 1)
      times.erase(times.begin());
    const double t = median(times);
    std::printf("%-12s %10.2f %14.3f %14.3f%s%s\n", v.name.c_str(), t, t / best_bound,
                t / equal_bound, run.problem.empty() ? "" : "  PROBLEM: ",
                run.problem.c_str());
    std::fflush(stdout);
    auto j = run_to_json(run);
    j["cut"] = v.name;
    j["median_seconds_counted"] = t;
    table.push_back(j);
  }
  out["equal_bound_seconds"] = equal_bound;
  out["best_bound_seconds"] = best_bound;
  out["variants"] = table;
  return out;
}

// A byte sink standing in for CAF behind a gateway: it accepts one connection, reads `bytes`,
// and (both ways) writes as many back at the same time.
class stream_sink {
 public:
  stream_sink(uint64_t bytes, bool both_ways) : bytes_(bytes), both_ways_(both_ways) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    auto a = ipv4_address("127.0.0.1", 0);
    socklen_t len = sizeof a;
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(fd_, 4) != 0 ||
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len) != 0)
      throw std::runtime_error(std::string("sink: ") + std::strerror(errno));
    port_ = ntohs(a.sin_port);
  }
  ~stream_sink() {
    wait();
    ::close(fd_);
  }
  void wait() {
    for (auto& t : threads_)
      t.join();
    threads_.clear();
  }
  uint16_t port() const { return port_; }
  void start() {
    threads_.emplace_back([this] {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 60000) != 1)
        return;
      const int conn = ::accept(fd_, nullptr, nullptr);
      std::thread writer;
      if (both_ways_)
        writer = std::thread([this, conn] { write_bytes(conn, bytes_); });
      received_ = read_bytes(conn, bytes_);
      if (writer.joinable())
        writer.join();
      ::close(conn);
    });
  }
  uint64_t received() const { return received_; }

  static void write_bytes(int fd, uint64_t bytes) {
    std::vector<char> block(1 << 20, 'x');
    uint64_t sent = 0;
    while (sent < bytes) {
      const auto n = ::send(fd, block.data(), std::min<uint64_t>(block.size(), bytes - sent),
                            MSG_NOSIGNAL);
      if (n <= 0)
        return;
      sent += static_cast<uint64_t>(n);
    }
  }
  static uint64_t read_bytes(int fd, uint64_t bytes) {
    timeval limit{120, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
    std::vector<char> block(1 << 20);
    uint64_t got = 0;
    while (got < bytes) {
      const auto n = ::read(fd, block.data(), block.size());
      if (n <= 0)
        break;
      got += static_cast<uint64_t>(n);
    }
    return got;
  }

 private:
  int fd_ = -1;
  uint16_t port_ = 0;
  uint64_t bytes_;
  bool both_ways_;
  std::atomic<uint64_t> received_{0};
  std::vector<std::thread> threads_;
};

// Seconds to carry `bytes` (each way, if both_ways) over a sealed link from host `from` to host
// `to`, directly, or through the relay of host `relay` (when >= 0) with `to` holding a
// reservation there: gateways and sinks run inside the hosts (their threads and sockets belong
// to those namespaces). Throws when the bytes do not arrive.
double gateway_stream_seconds(netlab& lab, int from, int to, int relay, double bytes,
                              bool both_ways) {
  symmetric_key key{};
  key.fill(0x17);
  const auto policy = admission_policy::of_swarm(key);
  const auto total = static_cast<uint64_t>(bytes);
  const auto to_key = peer_key::generate();
  std::unique_ptr<link_gateway> relay_gateway, to_gateway, from_gateway;
  std::unique_ptr<stream_sink> sink;
  auto options_in = [&](int host) {
    link_gateway_options options;
    options.listen_hosts = {lab.behind_nat(host) ? "0.0.0.0" : lab.address(host)};
    return options;
  };
  if (relay >= 0)
    lab.run_in_host(relay, [&] {
      relay_gateway =
        std::make_unique<link_gateway>(peer_key::generate(), policy, options_in(relay));
    });
  lab.run_in_host(to, [&] {
    sink = std::make_unique<stream_sink>(total, both_ways);
    to_gateway = std::make_unique<link_gateway>(to_key, policy, options_in(to));
    to_gateway->set_local_port(sink->port());
    if (relay >= 0)
      to_gateway->reserve(lab.address(relay), relay_gateway->public_port());
  });
  lab.run_in_host(from, [&] {
    from_gateway = std::make_unique<link_gateway>(peer_key::generate(), policy, options_in(from));
  });
  if (relay >= 0) {
    const auto until = clock_type::now() + 10s;
    while (clock_type::now() < until &&
           (to_gateway->reservations().empty() ||
            to_gateway->reservations()[0].current != relay_reservation::state::active))
      std::this_thread::sleep_for(10ms);
  }
  // The tunnel's loopback port, like the client, belongs to host `from`.
  std::string error;
  std::optional<uint16_t> tunnel;
  int client = -1;
  lab.run_in_host(from, [&] {
    tunnel = relay >= 0 ? from_gateway->open_relayed_tunnel(lab.address(relay),
                                                            relay_gateway->public_port(),
                                                            peer_id_of(to_key.public_part()), error)
                        : from_gateway->open_tunnel(lab.address(to), to_gateway->public_port(),
                                                    error);
    client = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  });
  if (!tunnel)
    throw std::runtime_error("stream: " + error);
  sink->start();
  const auto started = clock_type::now();
  auto a = ipv4_address("127.0.0.1", *tunnel);
  if (::connect(client, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(client);
    throw std::runtime_error(std::string("stream: connect: ") + std::strerror(errno));
  }
  std::thread writer([&] { stream_sink::write_bytes(client, total); });
  const uint64_t back = both_ways ? stream_sink::read_bytes(client, total) : total;
  writer.join();
  sink->wait();  // the sink has read everything (or timed out)
  const double seconds = std::chrono::duration<double>(clock_type::now() - started).count();
  ::close(client);
  if (sink->received() < total || back < total)
    throw std::runtime_error("stream: " + std::to_string(sink->received()) + " of " +
                             std::to_string(total) + " bytes arrived, " + std::to_string(back) +
                             " came back");
  return seconds;
}

// Part 5: peers behind NAT. (a) 4 peers, hosts 2 and 3 behind NAT routers: they dial out, reach
// each other through relays and reduce no part, against the bandwidth bound of that cut and of
// the cut where all four could reduce. (b) What a relay costs: a sealed stream from one NATed
// host to another through a relay, one way and both ways at once, against a direct link.
json nat_sweep(const settings& s, const std::filesystem::path& logs) {
  json out = json::object();
  const int n = 4;
  netlab_options options = lab_options(s);
  options.behind_nat = {false, false, true, true};
  std::unique_ptr<lab_hosts> hosts;
  try {
    netlab::cleanup_stale("ddl");
    hosts = std::make_unique<lab_hosts>(n, options);
  } catch (const netlab_unavailable& e) {
    std::printf("peers behind NAT: skipped: %s\n", e.what());
    out["skipped"] = e.what();
    return out;
  }
  const auto elements = static_cast<size_t>(s.megabytes * 1e6 / 4);
  const std::vector<double> rates(static_cast<size_t>(n), s.rate_mbit * 1e6 / 8);
  const double nat_bound = slowest_transfer_seconds(
    partition_by_shares(elements, bandwidth_part_shares(rates, {true, true, false, false})),
    rates, 4);
  const double all_bound =
    slowest_transfer_seconds(butterfly_partition(elements, static_cast<size_t>(n)), rates, 4);
  std::printf("peers behind NAT: n=%d (hosts 2 and 3 behind NAT routers), %.0f MB, %s; bound "
              "with no part for them %.2f s, if all four could reduce %.2f s; load %s\n",
              n, s.megabytes, describe_lab(hosts->lab(), s).c_str(), nat_bound, all_bound,
              load_average().c_str());
  std::fflush(stdout);
  const std::vector<std::string> flags{"--elements",       std::to_string(elements),
                                       "--sealed",          "--suspect-after",
                                       "60",                "--remove-after",
                                       "120",               "--connection-timeout",
                                       "60"};
  auto run =
    run_swarm(*hosts, s, n, s.rounds, flags, logs / "nat", run_timeout(nat_bound, s.rounds));
  std::printf("%-28s %10s %12s %14s\n", "", "round s", "vs bound", "vs all-reduce");
  std::printf("%-28s %10.2f %12.3f %14.3f%s%s\n", "4 peers, 2 behind NAT", run.median_seconds,
              run.median_seconds / nat_bound, run.median_seconds / all_bound,
              run.problem.empty() ? "" : "  PROBLEM: ", run.problem.c_str());
  std::printf("%-28s %10d %12d\n", "  suspicions / removals", run.suspicions, run.removals);
  std::fflush(stdout);
  auto j = run_to_json(run);
  j["bound_seconds"] = nat_bound;
  j["all_reachable_bound_seconds"] = all_bound;
  out["swarm"] = j;

  // (b) streams: host 2 -> host 3 through host 0's relay, and host 2 -> host 1 directly.
  const double bytes = s.megabytes * 1e6;
  const double one_way_bound = bytes / (s.rate_mbit * 1e6 / 8);
  std::printf("%-28s %10s %12s\n", "sealed stream, no delay", "seconds", "vs bound");
  json streams = json::array();
  struct variant {
    const char* name;
    int to;
    int relay;
    bool both_ways;
    double bound;  // the relay's links carry both directions: twice the bytes each way
  };
  for (const auto& v : {variant{"direct, one way", 1, -1, false, one_way_bound},
                        variant{"relayed, one way", 3, 0, false, one_way_bound},
                        variant{"direct, both ways", 1, -1, true, one_way_bound},
                        variant{"relayed, both ways", 3, 0, true, 2 * one_way_bound}}) {
    try {
      const double t = gateway_stream_seconds(hosts->lab(), 2, v.to, v.relay, bytes, v.both_ways);
      std::printf("%-28s %10.2f %12.3f\n", v.name, t, t / v.bound);
      streams.push_back({{"variant", v.name}, {"seconds", t}, {"bound_seconds", v.bound}});
    } catch (const std::exception& e) {
      std::printf("%-28s PROBLEM: %s\n", v.name, e.what());
      streams.push_back({{"variant", v.name}, {"problem", e.what()}});
    }
    std::fflush(stdout);
  }
  out["streams"] = streams;
  return out;
}

// Part 6: links as they are. 8 peers whose access links have their own delays (round trips to
// the core from 10 to 300 ms), +-10 ms of jitter, 0.5% packet loss and an upload 5x slower
// than the download, with the default membership and transport timeouts (nothing tuned for the
// lab). Rounds against the bandwidth bound of their cut (uploads limit), and suspicions of
// peers that were up all along (aim 0): sealed links (membership also hears the gateway's
// bytes and round trips) against plain ones (heartbeats only).
json internet_sweep(const settings& s, const std::filesystem::path& logs) {
  json out = json::object();
  const int n = 8;
  netlab_options options = lab_options(s);
  options.one_way_delay_ms = 0;
  options.host_upload_mbit.assign(static_cast<size_t>(n), s.rate_mbit / 5);
  options.host_delay_ms = {5, 150, 12, 90, 25, 120, 40, 60};
  options.jitter_ms = 10;
  options.loss_percent = 0.5;
  options.queue_ms = s.internet_queue_ms;
  std::unique_ptr<lab_hosts> hosts;
  try {
    netlab::cleanup_stale("ddl");
    hosts = std::make_unique<lab_hosts>(n, options);
  } catch (const netlab_unavailable& e) {
    std::printf("links as they are: skipped: %s\n", e.what());
    out["skipped"] = e.what();
    return out;
  }
  const auto elements = static_cast<size_t>(s.internet_megabytes * 1e6 / 4);
  std::vector<double> rates;
  for (int i = 0; i < n; ++i)
    rates.push_back(std::min(hosts->lab().rate_mbit(i), hosts->lab().upload_mbit(i)) * 1e6 / 8);
  const double bound =
    slowest_transfer_seconds(partition_by_shares(elements, bandwidth_part_shares(rates)), rates, 4);
  std::printf("links as they are: n=%d, %.0f MB, %.0f Mbit/s down and %.0f up per host, one-way "
              "access delays 5 to 150 ms (round trips 20 to 600 ms between hosts), +-10 ms "
              "jitter, 0.5%% loss, %.0f ms queues (%s); bound %.2f s; load %s\n",
              n, s.internet_megabytes, s.rate_mbit, s.rate_mbit / 5, s.internet_queue_ms,
              hosts->lab().kernel_delay() ? "netem" : "latency relays", bound,
              load_average().c_str());
  std::fflush(stdout);
  std::printf("%-28s %10s %12s %12s %10s %8s\n", "links", "round s", "vs bound", "suspicions",
              "removals", "dropped");
  json variants = json::array();
  for (const auto& links : s.internet_links) {
    if (links != "sealed" && links != "plain")
      throw std::invalid_argument("--internet-links takes sealed and plain, not " + links);
    const bool sealed = links == "sealed";
    // ddactor's default round timeout (the bench peer's own default is 600 s): rounds on
    // these links take longer and must get their deadline from their size and link rates.
    std::vector<std::string> flags{"--elements", std::to_string(elements), "--allreduce-timeout",
                                   "60"};
    if (sealed)
      flags.push_back("--sealed");
    const char* name = sealed ? "sealed (gateway liveness)" : "plain (heartbeats only)";
    uint64_t dropped_before = 0;
    for (int i = 0; i < n; ++i)
      dropped_before += hosts->lab().dropped_packets(i);
    auto run = run_swarm(*hosts, s, n, s.rounds, flags, logs / (sealed ? "sealed" : "plain"),
                         run_timeout(bound, s.rounds));
    uint64_t dropped = 0;
    for (int i = 0; i < n; ++i)
      dropped += hosts->lab().dropped_packets(i);
    dropped -= dropped_before;
    std::printf("%-28s %10.2f %12.3f %12d %10d %8llu%s%s\n", name, run.median_seconds,
                run.median_seconds / bound, run.suspicions, run.removals,
                static_cast<unsigned long long>(dropped), run.problem.empty() ? "" : "  PROBLEM: ",
                run.problem.c_str());
    std::fflush(stdout);
    auto j = run_to_json(run);
    j["links"] = name;
    j["bound_seconds"] = bound;
    j["dropped_packets"] = dropped;
    variants.push_back(j);
  }
  out["variants"] = variants;
  return out;
}

} // namespace

int main(int argc, char** argv) {
  CLI::App app{"Swarm all-reduce against the bandwidth lower bound; codecs on shaped links"};
  settings s;
  app.add_option("--peer-binary", s.peer_binary, "ddactor_allreduce_peer")->capture_default_str();
  app.add_option("--peers", s.peers, "group sizes n")->delimiter(',')->capture_default_str();
  app.add_option("--megabytes", s.megabytes, "vector size, MB (10^6 bytes)")->capture_default_str();
  app.add_option("--rounds", s.rounds, "rounds per n")->capture_default_str();
  app.add_option("--modes", s.modes, "loopback, shaped")->delimiter(',')->capture_default_str();
  app.add_option("--rate-mbit", s.rate_mbit, "shaped link rate per host and direction")
    ->capture_default_str();
  app.add_option("--delay-ms", s.delay_ms, "one-way delay per link")->capture_default_str();
  app.add_option("--delay-mode", s.delay_mode, "automatic, kernel (netem) or relay")
    ->capture_default_str();
  app.add_option("--raw-megabytes", s.raw_megabytes, "loopback TCP measurement size, MB")
    ->capture_default_str();
  app.add_flag("!--no-raw-baseline", s.raw_baseline,
               "skip the raw TCP baseline in the all-reduce's traffic pattern (shaped links)");
  app.add_flag("--codec-sweep", s.codec_sweep, "run the codec sweep instead of the size sweep");
  app.add_flag("--hetero", s.hetero,
               "heterogeneous links instead: host 0 at --slow-mbit, the others at --rate-mbit; "
               "equal parts vs cut by declared and by measured rates");
  app.add_flag("--nat", s.nat,
               "peers behind NAT instead: 4 peers, 2 behind NAT routers (rounds against the "
               "bound of their cut), and sealed streams through a relay against direct ones");
  app.add_flag("--internet", s.internet,
               "links as they are instead: 8 peers, per-host delays, jitter, 0.5% loss, uploads "
               "5x slower than downloads, default timeouts; rounds against the bound and false "
               "suspicions, sealed and plain");
  app.add_option("--internet-megabytes", s.internet_megabytes, "vector size there, MB")
    ->capture_default_str();
  app.add_option("--internet-queue-ms", s.internet_queue_ms,
                 "the links' queues there, ms of their rate (a home router's buffer)")
    ->capture_default_str();
  app.add_option("--internet-links", s.internet_links, "links there: sealed, plain")
    ->delimiter(',')
    ->capture_default_str();
  app.add_option("--audit-probability", s.audit_probability,
                 "sealing sweep: audit probability of the signed runs")
    ->capture_default_str();
  app.add_flag("--sealing", s.sealing,
               "run the sealed-vs-plain links sweep instead of the size sweep");
  app.add_option("--hetero-peers", s.hetero_peers, "peers of that sweep")->capture_default_str();
  app.add_option("--slow-mbit", s.slow_mbit, "host 0's link there")->capture_default_str();
  app.add_option("--codecs", s.codecs, "codecs to sweep; name+zstdL adds zstd level L")
    ->delimiter(',')
    ->capture_default_str();
  app.add_option("--codec-elements", s.codec_elements, "sweep vector size (0: DiT-S/2 layout)")
    ->capture_default_str();
  app.add_option("--codec-peers", s.codec_peers, "peers in the codec sweep")->capture_default_str();
  app.add_option("--codec-rounds", s.codec_rounds, "rounds per codec")->capture_default_str();
  app.add_option("--chunk-elements", s.chunk_elements, "all-reduce chunk")->capture_default_str();
  app.add_option("--peer-flag", s.peer_flags, "extra flag for every peer (repeatable)")
    ->allow_extra_args(false);
  app.add_option("--json", s.json_path, "write the figures to this JSON file");
  app.add_option("--keep-logs", s.keep_logs, "keep peer logs in this folder");
  CLI11_PARSE(app, argc, argv);
  ::signal(SIGPIPE, SIG_IGN);

  std::filesystem::path logs =
    s.keep_logs.empty()
      ? std::filesystem::temp_directory_path() / ("ddactor_allreduce_bench_" + std::to_string(::getpid()))
      : std::filesystem::path(s.keep_logs);
  std::filesystem::create_directories(logs);
  json result;
  int code = 0;
  try {
    result["config"] = {{"peers", s.peers},           {"megabytes", s.megabytes},
                        {"rounds", s.rounds},         {"modes", s.modes},
                        {"rate_mbit", s.rate_mbit},   {"delay_ms", s.delay_ms},
                        {"codec_sweep", s.codec_sweep}, {"codecs", s.codecs},
                        {"codec_elements", s.codec_elements}, {"codec_rounds", s.codec_rounds},
                        {"chunk_elements", s.chunk_elements}};
    if (s.hetero)
      result["heterogeneous"] = heterogeneous_sweep(s, logs);
    else if (s.nat)
      result["nat"] = nat_sweep(s, logs);
    else if (s.internet)
      result["internet"] = internet_sweep(s, logs);
    else if (s.sealing)
      result["sealing"] = sealing_sweep(s, logs);
    else if (s.codec_sweep)
      result["codec_sweep"] = codec_sweep(s, logs);
    else
      result["size_sweep"] = size_sweep(s, logs);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ddactor_allreduce_bench: %s\n", e.what());
    result["error"] = e.what();
    code = 1;
  }
  if (!s.json_path.empty()) {
    std::ofstream(s.json_path) << result.dump(2) << "\n";
    std::printf("figures written to %s\n", s.json_path.c_str());
  }
  if (s.keep_logs.empty())
    std::filesystem::remove_all(logs);
  else
    std::printf("peer logs kept in %s\n", logs.c_str());
  return code;
}
