#pragma once
// A network lab for benchmarks and multi-peer tests: N hosts, each a Linux network namespace
// with one shaped link into a shared bridge, so that peers started inside them see a WAN-like
// network while running on one machine. The lab owns its namespaces, links, qdiscs, the
// processes it spawns and its relays; the destructor removes all of them, and a watchdog
// process removes them too if this process dies without running it (SIGINT, SIGKILL, crash).
//
// Topology. Namespace `<prefix>hub` holds a bridge `br0`; host i is namespace `<prefix>h<i>`
// with interface eth0 = <subnet>.(i+1)/24, wired to port v<i> of the bridge by a veth pair.
// Nothing is created in, or changed in, the namespace of the calling process.
//
//        h0 eth0 ──veth── v0 ┐
//        h1 eth0 ──veth── v1 ├─ br0 (in <prefix>hub)
//        h2 eth0 ──veth── v2 ┘
//
// Shaping (each host's own access link, as on the internet):
// - rate: tbf at rate_mbit on eth0's egress (the host's upload; host_upload_mbit[i] where set:
//   home links upload 5-10x slower than they download) and on v<i>'s egress (its download), so
//   n peers sending to one host share that host's download rate. tbf also where netem exists,
//   so that both delay modes use the same (validated) rate limiter.
// - per-host delay: host_delay_ms[i] is host i's access link's one-way delay, so a byte from
//   host i to host j takes D + d_i + d_j (D below) and their round trip 2 (D + d_i + d_j);
//   jitter_ms spreads each packet's (relay: each read's) delay by up to +-J.
// - delay, one-way D per link direction, so that a round trip between two hosts takes 2D:
//   - with sch_netem (a normal distribution kernel): netem delay D on eth0's egress, the tbf as
//     its child (so every packet, handshake included, gets D);
//   - without it: nothing in the kernel; the caller puts a relay (ddactor_latency_relay, see
//     latency_relay.hpp) in front of every port that peers connect to, with add_relay(), and
//     announces the relay's port instead. Each byte of a connection into that host then waits
//     D in each direction (D + d_i + d_j: the relay in host j knows each host's address). The
//     handshake is not delayed in this mode, and peers see relayed connections coming from
//     their own host address. With netem, d_i sits on both of host i's egresses instead.
// Home routers: a host i with options.behind_nat[i] sits behind a router namespace
// `<prefix>r<i>` that holds address(i) on its WAN side (wired to v<i>) and 192.168.<i>.1 on its
// LAN side; the host is 192.168.<i>.2 behind it. The router masquerades what leaves (peers see
// the host's connections come from address(i)) and its stateful firewall (nftables) drops every
// connection that starts outside: nothing can connect to the host, as behind a home router
// without port forwarding. Shaping then applies at the router's WAN side. Needs `nft`.
//
//        h1 eth0 ──veth── lan [r1: NAT + firewall] wan ──veth── v1 ── br0
//
// Queues: tbf holds max(64 KiB, rate x 20 ms) when the delay is not in the kernel (the relay
// holds the bytes in flight), else max(64 KiB, rate x (2D + 20 ms)), about one bandwidth-delay
// product, so that one TCP flow can fill the link; queue_ms sets it instead.
//
// Use in a benchmark: each peer listens on 0.0.0.0:7000 (config network.listen) and announces
// the port others must dial (network.announce), which is the relay's when relays carry the delay:
//
//   netlab lab(4, {.rate_mbit = 100, .one_way_delay_ms = 50});  // or catch netlab_unavailable
//   for (int i = 0; i < 4; ++i) {
//     const uint16_t port = lab.add_relay(i, 7000, 7100);  // 7000 where netem does the delay
//     // write peer i's config with announce = lab.address(i) + ":" + std::to_string(port)
//     pids.push_back(lab.spawn(i, {ddactor_binary, ...}, log_dir / ("peer" + ... + ".log")));
//   }
//
// Needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN), `ip` and, when shaping, `tc` (iproute2). Not
// thread-safe: use one lab from one thread at a time.

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace ddactor {

/// A lab operation failed (the message quotes the failing command and its output).
class netlab_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// This machine or process cannot host a lab at all (not root, no `ip`, no network
/// namespaces, no netem where it was required): callers print "skipped: <what()>".
class netlab_unavailable : public netlab_error {
 public:
  using netlab_error::netlab_error;
};

enum class netlab_delay_mode {
  automatic,  // netem when the kernel has it, else relays
  kernel,     // netem, or throw netlab_unavailable
  relay,      // relays even where netem exists (to test what machines without it measure)
};

struct netlab_options {
  double rate_mbit = 0.0;         // per host and direction (10^6 bit/s); 0: unlimited
  // Host i's rate instead of rate_mbit where host_rate_mbit[i] > 0 (a slower home link).
  std::vector<double> host_rate_mbit;
  // Host i's upload instead of its rate where host_upload_mbit[i] > 0 (asymmetric links).
  std::vector<double> host_upload_mbit;
  // Host i's access link's one-way delay in ms, added to D on every path through host i.
  std::vector<double> host_delay_ms;
  double jitter_ms = 0.0;  // each delay spread uniformly by +-jitter_ms
  // Each tbf's queue in ms of its rate (a router's buffer); 0: the rule under "Queues" above.
  // Home routers buffer 100 ms of upload or more; a 20 ms tail-drop queue shared by 7 flows
  // starves single TCP flows for seconds (retransmission backoff), which real uplinks do less.
  double queue_ms = 0.0;
  // Host i sits behind a NAT router with a stateful firewall where behind_nat[i] (see above).
  std::vector<bool> behind_nat;
  // Packets each host's access link drops at random, in each direction, in percent (nftables:
  // `numgen random` at the link's edge, as no sch_netem may exist). Needs `nft`.
  double loss_percent = 0.0;
  double one_way_delay_ms = 0.0;  // D, per link direction
  // Names of namespaces start with it; empty: "ddl<pid>-<n>-" (n counts labs in this process).
  std::string name_prefix;
  std::string subnet = "10.77.0";  // the first three octets of the lab's /24; must be 10.X.Y
  netlab_delay_mode delay_mode = netlab_delay_mode::automatic;
  // The relay executable; empty: the one built with this library.
  std::filesystem::path relay_program;
  // Where relay logs go; empty: a folder in the temp directory, removed with the lab.
  std::filesystem::path log_directory;
};

class netlab {
 public:
  /// Builds the lab; throws netlab_unavailable or netlab_error, leaving nothing behind.
  netlab(int hosts, netlab_options options = {});
  /// Stops spawned processes and relays (SIGTERM, SIGKILL after 2 s), kills anything else
  /// still inside the lab's namespaces, removes links and namespaces. Never throws.
  ~netlab();
  netlab(const netlab&) = delete;
  netlab& operator=(const netlab&) = delete;

  int hosts() const { return static_cast<int>(host_namespaces_.size()); }
  const netlab_options& options() const { return options_; }
  /// Host i's shaped rate in Mbit/s (0: unlimited): its download, and its upload unless
  /// host_upload_mbit says otherwise.
  double rate_mbit(int i) const;
  /// Host i's shaped upload in Mbit/s (0: unlimited).
  double upload_mbit(int i) const;
  /// Host i's access link's one-way delay (host_delay_ms[i], or 0).
  double host_delay_ms(int i) const;
  /// One-way delay from host i to host j, in ms: D + d_i + d_j.
  double path_delay_ms(int i, int j) const;
  /// Host i's IPv4 address as other hosts see it, e.g. "10.77.0.1" for i = 0 (behind NAT:
  /// its router's).
  std::string address(int i) const;
  /// Whether host i sits behind a NAT router.
  bool behind_nat(int i) const;
  /// Packets host i's access link dropped so far by loss_percent (both directions).
  uint64_t dropped_packets(int i) const;
  std::string namespace_name(int i) const;
  /// A shell prefix that runs a command in host i: "ip netns exec <name>".
  std::string exec_prefix(int i) const;
  /// Whether netem carries the delay (then add_relay() does nothing).
  bool kernel_delay() const { return kernel_delay_; }
  /// Whether ports that peers connect to need add_relay() to get the delay.
  bool needs_relays() const { return delayed() && !kernel_delay_; }
  /// Whether this kernel has sch_netem (probed at construction when a delay was asked for).
  bool netem_available() const { return netem_available_; }

  /// Starts argv (argv[0] found on PATH) inside host i, stdout and stderr to `log`, stdin from
  /// /dev/null; returns its pid. The lab stops it at destruction if it is still running.
  pid_t spawn(int i, const std::vector<std::string>& argv, const std::filesystem::path& log);
  /// The exit code of a spawned process (128 + signal if killed), or nothing if it is still
  /// running after `timeout`.
  std::optional<int> wait(pid_t pid, std::chrono::milliseconds timeout);
  /// SIGTERM, then SIGKILL after `grace`; returns the exit code.
  int stop(pid_t pid, std::chrono::milliseconds grace = std::chrono::seconds(2));

  /// Puts a relay in host i listening on address(i):listen_port (0: any free port) that
  /// forwards to address(i):target_port with the lab's one-way delay each way; returns the
  /// port peers must connect to. Without a relay-mode delay: does nothing and returns
  /// target_port. Throws netlab_error for a host behind NAT (nothing can connect to it).
  uint16_t add_relay(int i, uint16_t target_port, uint16_t listen_port = 0);

  /// Runs f on a fresh thread inside host i's network namespace and waits for it; rethrows
  /// what f throws. Sockets f creates stay in host i when used from any other thread, so one
  /// process can act as several hosts.
  void run_in_host(int i, const std::function<void()>& f) const;

  /// Removes namespaces named `prefix`* left by runs that died (kills what runs inside them
  /// first). A name of the form `prefix`<pid>-... whose pid is alive is kept, so that
  /// cleanup_stale("ddl") at the start of a benchmark spares labs of running processes.
  /// Returns how many namespaces were removed; throws netlab_unavailable like the constructor.
  static int cleanup_stale(const std::string& prefix = "ddl");

 private:
  // Whether any path has a delay or jitter.
  bool delayed() const;
  void build(int hosts);
  void shape_host(int i);
  void build_router(int i);
  void wire_to_bridge(int i, const std::string& ns, const std::string& device);
  // The namespace and device of host i's access link: its eth0, or its router's WAN side.
  std::pair<std::string, std::string> edge_of(int i) const;
  void drop_at_random(int i);
  void teardown() noexcept;
  void start_watchdog(const std::vector<std::string>& namespaces);
  void dismiss_watchdog() noexcept;
  void check_host(int i) const;

  netlab_options options_;
  std::string prefix_;
  std::string hub_namespace_;
  std::vector<std::string> host_namespaces_;
  std::vector<std::string> router_namespaces_;  // of the hosts behind NAT
  std::string nft_program_;
  std::string ip_program_;
  std::string tc_program_;
  bool netem_available_ = false;
  bool kernel_delay_ = false;
  bool own_log_directory_ = false;
  std::map<pid_t, std::optional<int>> children_;  // pid -> exit code once reaped
  pid_t watchdog_pid_ = -1;
  int watchdog_fd_ = -1;  // write end of the watchdog's stdin
};

}  // namespace ddactor
