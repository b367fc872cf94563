// The network lab: namespaces, veth pairs, a bridge and qdiscs made by running `ip` and `tc`,
// processes started inside namespaces with setns(2), and a watchdog shell that undoes the lab
// if this process dies first. See netlab.hpp for the topology and the shaping model.
#include "bench/netlab/netlab.hpp"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <fstream>
#include <iterator>
#include <sstream>
#include <thread>

extern char** environ;

namespace ddactor {
namespace {

using namespace std::chrono_literals;

std::atomic<int> labs_created{0};

// Undoes the lab when this process dies: it reads one line from its stdin (a socket whose
// other end only this process holds); "done" means the lab was removed normally, end of file
// means the process died. Arguments: ip, log folder ("" for none), namespaces.
constexpr const char* watchdog_script = R"sh(
ip="$1"; logs="$2"; shift 2
IFS= read -r line
[ "$line" = done ] && exit 0
for ns in "$@"; do
  pids=$("$ip" netns pids "$ns" 2>/dev/null)
  [ -n "$pids" ] && kill -9 $pids 2>/dev/null
done
for ns in "$@"; do "$ip" netns del "$ns" 2>/dev/null; done
[ -n "$logs" ] && rm -rf -- "$logs"
exit 0
)sh";

std::string errno_text(const std::string& what) {
  return what + ": " + std::strerror(errno);
}

// `ip` and `tc` live in /usr/sbin, which a non-login PATH may lack.
std::string find_program(const std::string& name) {
  if (name.find('/') != std::string::npos)
    return ::access(name.c_str(), X_OK) == 0 ? name : std::string();
  std::string path = std::getenv("PATH") ? std::getenv("PATH") : "";
  path += ":/usr/local/sbin:/usr/sbin:/sbin:/usr/bin:/bin";
  std::stringstream folders(path);
  std::string folder;
  while (std::getline(folders, folder, ':')) {
    if (folder.empty())
      continue;
    const std::string candidate = folder + "/" + name;
    struct stat info {};
    if (::stat(candidate.c_str(), &info) == 0 && S_ISREG(info.st_mode) &&
        ::access(candidate.c_str(), X_OK) == 0)
      return candidate;
  }
  return {};
}

std::string join_command(const std::vector<std::string>& argv) {
  std::string text;
  for (const auto& a : argv)
    text += (text.empty() ? "" : " ") + a;
  return text;
}

std::vector<char*> c_argv(std::vector<std::string>& argv) {
  std::vector<char*> result;
  for (auto& a : argv)
    result.push_back(a.data());
  result.push_back(nullptr);
  return result;
}

struct command_result {
  int exit_code = -1;
  std::string output;  // stdout and stderr together
};

command_result run_command(std::vector<std::string> argv) {
  int out[2];
  if (::pipe2(out, O_CLOEXEC) != 0)
    throw netlab_error(errno_text("pipe2"));
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, out[1], 1);
  posix_spawn_file_actions_adddup2(&actions, out[1], 2);
  posix_spawn_file_actions_addclosefrom_np(&actions, 3);
  pid_t pid = -1;
  auto args = c_argv(argv);
  const int rc = ::posix_spawn(&pid, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  ::close(out[1]);
  if (rc != 0) {
    ::close(out[0]);
    throw netlab_error("cannot run " + argv[0] + ": " + std::strerror(rc));
  }
  command_result result;
  char buffer[4096];
  while (true) {
    const ssize_t n = ::read(out[0], buffer, sizeof buffer);
    if (n > 0)
      result.output.append(buffer, static_cast<std::size_t>(n));
    else if (n < 0 && errno == EINTR)
      continue;
    else
      break;
  }
  ::close(out[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  while (!result.output.empty() && result.output.back() == '\n')
    result.output.pop_back();
  return result;
}

std::string run_checked(const std::vector<std::string>& argv) {
  auto result = run_command(argv);
  if (result.exit_code != 0)
    throw netlab_error("`" + join_command(argv) + "` failed (exit " +
                       std::to_string(result.exit_code) + "): " + result.output);
  return result.output;
}

std::vector<std::string> list_namespaces(const std::string& ip) {
  std::vector<std::string> names;
  std::stringstream lines(run_checked({ip, "netns", "list"}));
  std::string line;
  while (std::getline(lines, line)) {
    const auto end = line.find(' ');
    if (!line.empty())
      names.push_back(line.substr(0, end));
  }
  return names;
}

// Kills what runs inside a namespace (processes that are not our children: grandchildren, or
// leftovers of a dead run), so that deleting its name also lets the kernel free it.
void kill_namespace_processes(const std::string& ip, const std::string& name) {
  const auto result = run_command({ip, "netns", "pids", name});
  std::stringstream pids(result.output);
  long pid = 0;
  while (pids >> pid)
    if (pid > 1 && pid != ::getpid())
      ::kill(static_cast<pid_t>(pid), SIGKILL);
}

void remove_namespace(const std::string& ip, const std::string& name) {
  kill_namespace_processes(ip, name);
  run_command({ip, "netns", "del", name});
}

void check_privileges(std::string& ip) {
  if (::geteuid() != 0)
    throw netlab_unavailable("the network lab needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN); "
                             "running as uid " + std::to_string(::geteuid()));
  ip = find_program("ip");
  if (ip.empty())
    throw netlab_unavailable("`ip` (iproute2) not found on PATH or in /usr/sbin, /sbin");
  if (::access("/proc/self/ns/net", F_OK) != 0)
    throw netlab_unavailable("this kernel has no network namespaces (/proc/self/ns/net missing)");
}

std::string format_number(double value) {
  char text[64];
  std::snprintf(text, sizeof text, "%.3f", value);
  return text;
}

// Written without `"v" + std::to_string(i)`, on which GCC 12 raises a false -Wrestrict.
std::string bridge_port_name(std::size_t i) {
  std::string name = "v";
  name += std::to_string(i);
  return name;
}

bool pid_alive(pid_t pid) {
  return ::kill(pid, 0) == 0 || errno == EPERM;
}

}  // namespace

netlab::netlab(int hosts, netlab_options options) : options_(std::move(options)) {
  if (hosts < 1 || hosts > 250)
    throw netlab_error("a lab has 1 to 250 hosts, not " + std::to_string(hosts));
  if (!(options_.rate_mbit >= 0) || !(options_.one_way_delay_ms >= 0) ||
      options_.one_way_delay_ms > 60000)
    throw netlab_error("rate_mbit must be >= 0 and one_way_delay_ms from 0 to 60000");
  {
    unsigned a = 0, b = 0, c = 0;
    char tail = 0;
    if (std::sscanf(options_.subnet.c_str(), "%u.%u.%u%c", &a, &b, &c, &tail) != 3 || a != 10 ||
        b > 255 || c > 255)
      throw netlab_error("subnet must be \"10.X.Y\" (the lab's /24), not \"" + options_.subnet +
                         "\"");
  }
  check_privileges(ip_program_);
  for (const auto* rates : {&options_.host_rate_mbit, &options_.host_upload_mbit})
    for (double rate : *rates)
      if (!(rate >= 0))
        throw netlab_error("host_rate_mbit and host_upload_mbit entries must be >= 0");
  for (double delay : options_.host_delay_ms)
    if (!(delay >= 0 && delay <= 60000))
      throw netlab_error("host_delay_ms entries must be from 0 to 60000");
  if (!(options_.jitter_ms >= 0 && options_.jitter_ms <= 60000))
    throw netlab_error("jitter_ms must be from 0 to 60000");
  if (!(options_.queue_ms >= 0 && options_.queue_ms <= 60000))
    throw netlab_error("queue_ms must be from 0 to 60000");
  const auto positive = [](const std::vector<double>& values) {
    return std::any_of(values.begin(), values.end(), [](double value) { return value > 0; });
  };
  if (options_.rate_mbit > 0 || positive(options_.host_rate_mbit) ||
      positive(options_.host_upload_mbit) || delayed()) {
    tc_program_ = find_program("tc");
    if (tc_program_.empty())
      throw netlab_unavailable("`tc` (iproute2) not found on PATH or in /usr/sbin, /sbin");
  }

  if (!(options_.loss_percent >= 0 && options_.loss_percent <= 100))
    throw netlab_error("loss_percent must be from 0 to 100");
  if (std::find(options_.behind_nat.begin(), options_.behind_nat.end(), true) !=
        options_.behind_nat.end() ||
      options_.loss_percent > 0) {
    nft_program_ = find_program("nft");
    if (nft_program_.empty())
      throw netlab_unavailable("`nft` (nftables) not found on PATH or in /usr/sbin, /sbin; hosts "
                               "behind NAT and lossy links need it");
  }

  const bool default_prefix = options_.name_prefix.empty();
  prefix_ = default_prefix ? "ddl" + std::to_string(::getpid()) + "-" +
                               std::to_string(labs_created.fetch_add(1)) + "-"
                           : options_.name_prefix;
  hub_namespace_ = prefix_ + "hub";
  std::vector<std::string> planned{hub_namespace_};
  for (int i = 0; i < hosts; ++i) {
    planned.push_back(prefix_ + "h" + std::to_string(i));
    if (behind_nat(i))
      planned.push_back(prefix_ + "r" + std::to_string(i));
  }
  for (const auto& existing : list_namespaces(ip_program_)) {
    if (std::find(planned.begin(), planned.end(), existing) == planned.end())
      continue;
    // Our pid in the name: a run that died long ago had the same pid.
    if (!default_prefix)
      throw netlab_error("network namespace " + existing + " already exists; remove it with "
                         "netlab::cleanup_stale(\"" + prefix_ + "\") or `ip netns del " +
                         existing + "`");
    remove_namespace(ip_program_, existing);
  }
  if (options_.log_directory.empty()) {
    options_.log_directory = std::filesystem::temp_directory_path() / (prefix_ + "logs");
    own_log_directory_ = true;
  }

  start_watchdog(planned);
  try {
    build(hosts);
  } catch (...) {
    teardown();
    dismiss_watchdog();
    throw;
  }
}

netlab::~netlab() {
  teardown();
  dismiss_watchdog();
}

void netlab::start_watchdog(const std::vector<std::string>& namespaces) {
  int ends[2];
  // A socket, not a pipe: writing "done" to a dead reader must not raise SIGPIPE here.
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ends) != 0)
    throw netlab_error(errno_text("socketpair"));
  std::vector<std::string> argv{"/bin/sh", "-c", watchdog_script, "netlab-watchdog", ip_program_,
                                own_log_directory_ ? options_.log_directory.string() : ""};
  argv.insert(argv.end(), namespaces.begin(), namespaces.end());
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, ends[0], 0);
  posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addclosefrom_np(&actions, 3);
  posix_spawnattr_t attributes;
  posix_spawnattr_init(&attributes);
  // Its own session: Ctrl-C on the terminal signals our process group, not the watchdog.
  sigset_t none;
  sigemptyset(&none);
  sigset_t defaults;
  sigemptyset(&defaults);
  sigaddset(&defaults, SIGTERM);
  sigaddset(&defaults, SIGPIPE);
  posix_spawnattr_setsigmask(&attributes, &none);
  posix_spawnattr_setsigdefault(&attributes, &defaults);
  posix_spawnattr_setflags(&attributes,
                           POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  auto args = c_argv(argv);
  const int rc =
    ::posix_spawn(&watchdog_pid_, args[0], &actions, &attributes, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attributes);
  ::close(ends[0]);
  if (rc != 0) {
    ::close(ends[1]);
    watchdog_pid_ = -1;
    throw netlab_error(std::string("cannot start the lab's watchdog (/bin/sh): ") +
                       std::strerror(rc));
  }
  watchdog_fd_ = ends[1];
}

void netlab::dismiss_watchdog() noexcept {
  if (watchdog_fd_ >= 0) {
    static const char done[] = "done\n";
    [[maybe_unused]] auto sent = ::send(watchdog_fd_, done, sizeof done - 1, MSG_NOSIGNAL);
    ::close(watchdog_fd_);
    watchdog_fd_ = -1;
  }
  if (watchdog_pid_ > 0) {
    int status = 0;
    while (::waitpid(watchdog_pid_, &status, 0) < 0 && errno == EINTR) {
    }
    watchdog_pid_ = -1;
  }
}

void netlab::build(int hosts) {
  const std::string& ip = ip_program_;
  try {
    run_checked({ip, "netns", "add", hub_namespace_});
  } catch (const netlab_error& e) {
    throw netlab_unavailable(std::string("cannot create network namespaces: ") + e.what());
  }
  // Entering a namespace is a separate facility: `ip -n` remounts /sys in a private mount
  // namespace, which fails where `/` is not a mount point (a plain chroot).
  try {
    run_checked({ip, "-n", hub_namespace_, "link", "set", "lo", "up"});
  } catch (const netlab_error& e) {
    throw netlab_unavailable(std::string("cannot enter network namespaces (in a chroot, bind-mount "
                                         "its root onto itself): ") + e.what());
  }
  // The bridge forwards frames without the IP firewall's hooks: where br_netfilter is loaded,
  // every frame would cross conntrack in the hub, in softirqs charged to whatever runs, mostly
  // the peers' training threads (about 1% of the CPU in ddactor_overlap_bench). Nothing of the
  // lab filters in the hub. Both switches: the kernel calls the hooks where either is on.
  run_checked({ip, "-n", hub_namespace_, "link", "add", "br0", "type", "bridge",
               "nf_call_iptables", "0", "nf_call_ip6tables", "0", "nf_call_arptables", "0"});
  for (const char* family : {"iptables", "ip6tables", "arptables"})
    run_command({ip, "netns", "exec", hub_namespace_, "sysctl", "-q", "-w",
                 std::string("net.bridge.bridge-nf-call-") + family + "=0"});
  run_checked({ip, "-n", hub_namespace_, "link", "set", "br0", "up"});

  if (delayed()) {
    // Adding a netem qdisc is the only reliable probe: the kernel loads sch_netem on demand.
    const auto probe = run_command({tc_program_, "-n", hub_namespace_, "qdisc", "add", "dev", "lo",
                                    "root", "netem", "delay", "1ms"});
    netem_available_ = probe.exit_code == 0;
    if (netem_available_)
      run_command({tc_program_, "-n", hub_namespace_, "qdisc", "del", "dev", "lo", "root"});
    if (options_.delay_mode == netlab_delay_mode::kernel && !netem_available_)
      throw netlab_unavailable("this kernel has no sch_netem, which the lab's delay_mode "
                               "\"kernel\" needs (tc: " + probe.output + ")");
    kernel_delay_ = netem_available_ && options_.delay_mode != netlab_delay_mode::relay;
  }

  for (int i = 0; i < hosts; ++i) {
    const std::string host = prefix_ + "h" + std::to_string(i);
    run_checked({ip, "netns", "add", host});
    host_namespaces_.push_back(host);
    run_checked({ip, "-n", host, "link", "set", "lo", "up"});
    if (behind_nat(i))
      build_router(i);
    else
      wire_to_bridge(i, host, "eth0");
    shape_host(i);
    if (options_.loss_percent > 0)
      drop_at_random(i);
  }
}

// Port v<i> of the bridge, wired to `device` in namespace `ns` (a host, or its router), which
// takes address(i). Made inside the hub with its peer end put straight into `ns`: no interface
// ever appears in the caller's namespace.
void netlab::wire_to_bridge(int i, const std::string& ns, const std::string& device) {
  const std::string& ip = ip_program_;
  const std::string bridge_port = bridge_port_name(static_cast<std::size_t>(i));
  run_checked({ip, "-n", hub_namespace_, "link", "add", bridge_port, "type", "veth", "peer",
               "name", device, "netns", ns});
  run_checked({ip, "-n", hub_namespace_, "link", "set", bridge_port, "master", "br0"});
  run_checked({ip, "-n", hub_namespace_, "link", "set", bridge_port, "up"});
  run_checked({ip, "-n", ns, "addr", "add", address(i) + "/24", "dev", device});
  run_checked({ip, "-n", ns, "link", "set", device, "up"});
}

// Host i behind a home router: see netlab.hpp.
void netlab::build_router(int i) {
  const std::string& ip = ip_program_;
  const std::string& host = host_namespaces_.at(static_cast<std::size_t>(i));
  const std::string router = prefix_ + "r" + std::to_string(i);
  const std::string lan = "192.168." + std::to_string(i);
  run_checked({ip, "netns", "add", router});
  router_namespaces_.push_back(router);
  run_checked({ip, "-n", router, "link", "set", "lo", "up"});
  wire_to_bridge(i, router, "wan");
  run_checked({ip, "-n", router, "link", "add", "lan", "type", "veth", "peer", "name", "eth0",
               "netns", host});
  run_checked({ip, "-n", router, "addr", "add", lan + ".1/24", "dev", "lan"});
  run_checked({ip, "-n", router, "link", "set", "lan", "up"});
  run_checked({ip, "-n", host, "addr", "add", lan + ".2/24", "dev", "eth0"});
  run_checked({ip, "-n", host, "link", "set", "eth0", "up"});
  run_checked({ip, "-n", host, "route", "add", "default", "via", lan + ".1"});
  run_checked({ip, "netns", "exec", router, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1"});
  // Masquerade what leaves; forward only what the host started (and its replies); drop new
  // connections to the router itself from outside, as home routers do (no reset: a dialer
  // waits for its timeout).
  const std::string rules = R"nft(
table ip nat {
  chain postrouting {
    type nat hook postrouting priority 100
    oifname "wan" masquerade
  }
}
table inet filter {
  chain forward {
    type filter hook forward priority 0; policy drop
    ct state established,related accept
    iifname "lan" oifname "wan" accept
  }
  chain input {
    type filter hook input priority 0; policy accept
    iifname "wan" ct state new drop
  }
}
)nft";
  const auto file = options_.log_directory / (router + ".nft");
  std::filesystem::create_directories(options_.log_directory);
  {
    std::ofstream out(file);
    out << rules;
  }
  run_checked({ip, "netns", "exec", router, nft_program_, "-f", file.string()});
}

bool netlab::behind_nat(int i) const {
  const auto at = static_cast<std::size_t>(i);
  return at < options_.behind_nat.size() && options_.behind_nat[at];
}

double netlab::rate_mbit(int i) const {
  const auto at = static_cast<std::size_t>(i);
  return at < options_.host_rate_mbit.size() && options_.host_rate_mbit[at] > 0
           ? options_.host_rate_mbit[at]
           : options_.rate_mbit;
}

double netlab::upload_mbit(int i) const {
  const auto at = static_cast<std::size_t>(i);
  return at < options_.host_upload_mbit.size() && options_.host_upload_mbit[at] > 0
           ? options_.host_upload_mbit[at]
           : rate_mbit(i);
}

double netlab::host_delay_ms(int i) const {
  const auto at = static_cast<std::size_t>(i);
  return at < options_.host_delay_ms.size() ? options_.host_delay_ms[at] : 0.0;
}

double netlab::path_delay_ms(int i, int j) const {
  return options_.one_way_delay_ms + host_delay_ms(i) + host_delay_ms(j);
}

bool netlab::delayed() const {
  return options_.one_way_delay_ms > 0 || options_.jitter_ms > 0 ||
         std::any_of(options_.host_delay_ms.begin(), options_.host_delay_ms.end(),
                     [](double delay) { return delay > 0; });
}

std::pair<std::string, std::string> netlab::edge_of(int i) const {
  if (behind_nat(i))
    return {prefix_ + "r" + std::to_string(i), "wan"};
  return {host_namespaces_.at(static_cast<std::size_t>(i)), "eth0"};
}

// loss_percent on host i's access link, both ways, with a counter for dropped_packets().
void netlab::drop_at_random(int i) {
  const auto [edge, device] = edge_of(i);
  const auto per_10000 = std::to_string(std::llround(options_.loss_percent * 100));
  const std::string rules = "table inet lab_loss {\n"
                            "  chain egress {\n"
                            "    type filter hook postrouting priority 0; policy accept\n"
                            "    oifname \"" + device + "\" numgen random mod 10000 < " +
                            per_10000 + " counter drop\n"
                            "  }\n"
                            "  chain ingress {\n"
                            "    type filter hook prerouting priority 0; policy accept\n"
                            "    iifname \"" + device + "\" numgen random mod 10000 < " +
                            per_10000 + " counter drop\n"
                            "  }\n"
                            "}\n";
  const auto file = options_.log_directory / (edge + "-loss.nft");
  std::filesystem::create_directories(options_.log_directory);
  std::ofstream(file) << rules;
  run_checked({ip_program_, "netns", "exec", edge, nft_program_, "-f", file.string()});
}

uint64_t netlab::dropped_packets(int i) const {
  check_host(i);
  if (options_.loss_percent <= 0)
    return 0;
  const auto [edge, device] = edge_of(i);
  std::stringstream listing(
    run_checked({ip_program_, "netns", "exec", edge, nft_program_, "list", "table", "inet",
                 "lab_loss"}));
  uint64_t dropped = 0;
  std::string word;
  while (listing >> word)
    if (word == "packets") {
      uint64_t n = 0;
      listing >> n;
      dropped += n;
    }
  return dropped;
}

void netlab::shape_host(int i) {
  // The longest round trip through host i sizes its queues (about one bandwidth-delay product).
  const double slowest_other_ms =
    options_.host_delay_ms.empty()
      ? 0.0
      : *std::max_element(options_.host_delay_ms.begin(), options_.host_delay_ms.end());
  const double delay_s =
    (options_.one_way_delay_ms + host_delay_ms(i) + slowest_other_ms + options_.jitter_ms) /
    1000.0;
  const auto tbf_for = [&](double rate) -> std::vector<std::string> {
    if (rate <= 0)
      return {};
    const double bytes_per_second = rate * 1e6 / 8.0;
    const auto burst = static_cast<long long>(std::max(32.0 * 1024, bytes_per_second * 0.002));
    const double queue_s = options_.queue_ms > 0 ? options_.queue_ms / 1000.0
                           : kernel_delay_      ? 2 * delay_s + 0.020
                                                : 0.020;
    const auto limit = static_cast<long long>(std::max(64.0 * 1024, bytes_per_second * queue_s));
    return {"tbf",   "rate",  std::to_string(std::llround(rate * 1e6)) + "bit",
            "burst", std::to_string(burst),
            "limit", std::to_string(limit)};
  };
  const auto upload = tbf_for(upload_mbit(i));
  const auto download = tbf_for(rate_mbit(i));
  const auto netem = [&](double delay_ms) -> std::vector<std::string> {
    std::vector<std::string> what{"netem", "delay",
                                  std::to_string(std::llround(delay_ms * 1000.0)) + "us"};
    if (options_.jitter_ms > 0)
      what.push_back(std::to_string(std::llround(options_.jitter_ms * 500.0)) + "us");
    what.insert(what.end(), {"limit", "100000"});
    return what;
  };
  const auto qdisc = [&](const std::string& ns, const std::string& dev,
                         std::vector<std::string> where, const std::vector<std::string>& what) {
    std::vector<std::string> argv{tc_program_, "-n", ns, "qdisc", "add", "dev", dev};
    argv.insert(argv.end(), where.begin(), where.end());
    argv.insert(argv.end(), what.begin(), what.end());
    run_checked(argv);
  };
  // With netem, a packet from i to j crosses i's edge (D + d_i) and j's bridge port (d_j);
  // jitter is split between the two, so a path spreads by about +-jitter_ms.
  const auto shape = [&](const std::string& ns, const std::string& device, double delay_ms,
                         const std::vector<std::string>& tbf) {
    if (kernel_delay_ && (delay_ms > 0 || options_.jitter_ms > 0)) {
      qdisc(ns, device, {"root", "handle", "1:"}, netem(delay_ms));
      if (!tbf.empty())
        qdisc(ns, device, {"parent", "1:1", "handle", "10:"}, tbf);
    } else if (!tbf.empty()) {
      qdisc(ns, device, {"root", "handle", "10:"}, tbf);
    }
  };
  const auto [edge, edge_device] = edge_of(i);
  shape(edge, edge_device, options_.one_way_delay_ms + host_delay_ms(i), upload);
  shape(hub_namespace_, bridge_port_name(static_cast<std::size_t>(i)), host_delay_ms(i),
        download);
}

void netlab::teardown() noexcept {
  try {
    // Spawned processes first (gently), so that they can flush logs.
    for (auto& [pid, code] : children_)
      if (!code)
        ::kill(pid, SIGTERM);
    const auto deadline = std::chrono::steady_clock::now() + 2s;
    for (auto& [pid, code] : children_) {
      while (!code) {
        int status = 0;
        const pid_t r = ::waitpid(pid, &status, WNOHANG);
        if (r == pid)
          code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        else if (r < 0)
          code = -1;
        else if (std::chrono::steady_clock::now() >= deadline)
          break;
        else
          std::this_thread::sleep_for(5ms);
      }
      if (!code) {
        ::kill(pid, SIGKILL);
        int status = 0;
        while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
        }
        code = 128 + SIGKILL;
      }
    }
    for (const auto& host : host_namespaces_)
      kill_namespace_processes(ip_program_, host);
    // Deleting a veth end removes the pair at once; a deleted namespace's devices go only when
    // the kernel gets round to it.
    for (std::size_t i = 0; i < host_namespaces_.size(); ++i)
      run_command({ip_program_, "-n", hub_namespace_, "link", "del", bridge_port_name(i)});
    for (const auto& host : host_namespaces_) {
      const auto result = run_command({ip_program_, "netns", "del", host});
      if (result.exit_code != 0)
        std::fprintf(stderr, "netlab: cannot remove namespace %s: %s\n", host.c_str(),
                     result.output.c_str());
    }
    host_namespaces_.clear();
    for (const auto& router : router_namespaces_)
      run_command({ip_program_, "netns", "del", router});
    router_namespaces_.clear();
    if (!hub_namespace_.empty()) {
      const auto names = list_namespaces(ip_program_);
      if (std::find(names.begin(), names.end(), hub_namespace_) != names.end())
        run_command({ip_program_, "netns", "del", hub_namespace_});
    }
    if (own_log_directory_) {
      std::error_code ignored;
      std::filesystem::remove_all(options_.log_directory, ignored);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "netlab: cleanup failed: %s\n", e.what());
  }
}

void netlab::check_host(int i) const {
  if (i < 0 || i >= hosts())
    throw netlab_error("host " + std::to_string(i) + " is not in this lab of " +
                       std::to_string(hosts()) + " hosts");
}

std::string netlab::address(int i) const {
  check_host(i);
  return options_.subnet + "." + std::to_string(i + 1);
}

std::string netlab::namespace_name(int i) const {
  check_host(i);
  return host_namespaces_[static_cast<std::size_t>(i)];
}

std::string netlab::exec_prefix(int i) const {
  return ip_program_ + " netns exec " + namespace_name(i);
}

pid_t netlab::spawn(int i, const std::vector<std::string>& argv,
                    const std::filesystem::path& log) {
  check_host(i);
  if (argv.empty())
    throw netlab_error("spawn: empty command");
  std::vector<std::string> args = argv;
  args[0] = find_program(argv[0]);
  if (args[0].empty())
    throw netlab_error("spawn: program not found: " + argv[0]);
  if (log.has_parent_path())
    std::filesystem::create_directories(log.parent_path());
  // Everything the child needs is opened here: between fork and exec only async-signal-safe
  // calls are allowed (this process may have other threads).
  const std::string ns_path = "/run/netns/" + namespace_name(i);
  const int ns_fd = ::open(ns_path.c_str(), O_RDONLY | O_CLOEXEC);
  if (ns_fd < 0)
    throw netlab_error(errno_text("spawn: cannot open " + ns_path));
  const int log_fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  const int null_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (log_fd < 0 || null_fd < 0) {
    const std::string message = errno_text("spawn: cannot open " + log.string());
    for (int fd : {ns_fd, log_fd, null_fd})
      if (fd >= 0)
        ::close(fd);
    throw netlab_error(message);
  }
  auto cargs = c_argv(args);
  const pid_t pid = ::fork();
  if (pid == 0) {
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    for (int s : {SIGPIPE, SIGINT, SIGTERM, SIGHUP})
      ::signal(s, SIG_DFL);
    ::dup2(null_fd, 0);
    ::dup2(log_fd, 1);
    ::dup2(log_fd, 2);
    if (::setns(ns_fd, CLONE_NEWNET) != 0) {
      static const char message[] = "netlab: setns failed\n";
      [[maybe_unused]] auto w = ::write(2, message, sizeof message - 1);
      ::_exit(126);
    }
    ::close_range(3, ~0U, 0);
    ::execve(cargs[0], cargs.data(), environ);
    static const char message[] = "netlab: execve failed\n";
    [[maybe_unused]] auto w = ::write(2, message, sizeof message - 1);
    ::_exit(127);
  }
  const int fork_errno = errno;
  for (int fd : {ns_fd, log_fd, null_fd})
    ::close(fd);
  if (pid < 0)
    throw netlab_error(std::string("spawn: fork: ") + std::strerror(fork_errno));
  children_[pid] = std::nullopt;
  return pid;
}

std::optional<int> netlab::wait(pid_t pid, std::chrono::milliseconds timeout) {
  auto it = children_.find(pid);
  if (it == children_.end())
    throw netlab_error("pid " + std::to_string(pid) + " was not spawned by this lab");
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!it->second) {
    int status = 0;
    const pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) {
      it->second = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    } else if (r < 0 && errno != EINTR) {
      it->second = -1;  // reaped elsewhere (SIGCHLD ignored?)
    } else {
      if (std::chrono::steady_clock::now() >= deadline)
        break;
      std::this_thread::sleep_for(5ms);
    }
  }
  return it->second;
}

int netlab::stop(pid_t pid, std::chrono::milliseconds grace) {
  if (auto code = wait(pid, 0ms))
    return *code;
  ::kill(pid, SIGTERM);
  if (auto code = wait(pid, grace))
    return *code;
  ::kill(pid, SIGKILL);
  return wait(pid, 60s).value_or(-1);
}

uint16_t netlab::add_relay(int i, uint16_t target_port, uint16_t listen_port) {
  if (i >= 0 && i < hosts() && behind_nat(i))
    throw netlab_error("host " + std::to_string(i) + " is behind NAT: nothing can connect to it");
  check_host(i);
  if (!needs_relays())
    return target_port;
  std::filesystem::path program = options_.relay_program;
#ifdef DDACTOR_LATENCY_RELAY_PROGRAM
  if (program.empty())
    program = DDACTOR_LATENCY_RELAY_PROGRAM;
#endif
  if (program.empty() || !std::filesystem::exists(program)) {
    std::error_code ignored;
    const auto beside_us =
      std::filesystem::read_symlink("/proc/self/exe", ignored).parent_path() /
      "ddactor_latency_relay";
    if (std::filesystem::exists(beside_us))
      program = beside_us;
  }
  if (program.empty() || !std::filesystem::exists(program))
    throw netlab_error("relay program not found (" + program.string() +
                       "); set netlab_options::relay_program");

  // The relay must hold rate x delay per direction or it, not the link, sets the rate. It runs
  // at nice -10, so that peers busy on the same cores (training) delay its bytes less beyond D.
  // It delays D + d_i, and d_j more for what comes from host j.
  double longest_ms = 0, fastest_mbit = 0;
  std::vector<std::string> sources;
  for (int j = 0; j < hosts(); ++j) {
    longest_ms = std::max(longest_ms, path_delay_ms(i, j) + options_.jitter_ms);
    fastest_mbit = std::max({fastest_mbit, rate_mbit(j), upload_mbit(j)});
    if (host_delay_ms(j) > 0)
      sources.insert(sources.end(),
                     {"--source-delay", address(j) + "=" + format_number(host_delay_ms(j))});
  }
  const auto buffer_bytes =
    fastest_mbit > 0
      ? static_cast<long long>(std::max(256.0 * 1024, 2 * fastest_mbit * 1e6 / 8 * longest_ms /
                                                        1000.0))
      : 8LL << 20;
  static std::atomic<int> relays_started{0};
  const auto log = options_.log_directory /
                   ("relay-h" + std::to_string(i) + "-" + std::to_string(target_port) + "-" +
                    std::to_string(relays_started.fetch_add(1)) + ".log");
  std::vector<std::string> argv{program.string(),
                                "--listen",
                                address(i) + ":" + std::to_string(listen_port),
                                "--target",
                                address(i) + ":" + std::to_string(target_port),
                                "--delay-ms",
                                format_number(options_.one_way_delay_ms + host_delay_ms(i)),
                                "--jitter-ms",
                                format_number(options_.jitter_ms),
                                "--seed",
                                std::to_string(1000 * i + relays_started.load()),
                                "--max-buffer-bytes",
                                std::to_string(buffer_bytes),
                                "--nice",
                                "-10"};
  argv.insert(argv.end(), sources.begin(), sources.end());
  const pid_t pid = spawn(i, argv, log);
  const auto read_log = [&] {
    std::ifstream in(log);
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (true) {
    const std::string text = read_log();
    const auto start = text.find("listening on ");
    const auto arrow = text.find(" ->", start);
    if (start != std::string::npos && arrow != std::string::npos) {
      const auto colon = text.rfind(':', arrow);
      return static_cast<uint16_t>(std::stoul(text.substr(colon + 1, arrow - colon - 1)));
    }
    if (wait(pid, 0ms))
      throw netlab_error("the relay in host " + std::to_string(i) + " exited: " + text);
    if (std::chrono::steady_clock::now() >= deadline) {
      stop(pid);
      throw netlab_error("the relay in host " + std::to_string(i) +
                         " did not start listening within 10 s: " + text);
    }
    std::this_thread::sleep_for(2ms);
  }
}

void netlab::run_in_host(int i, const std::function<void()>& f) const {
  const std::string ns_path = "/run/netns/" + namespace_name(i);
  std::exception_ptr error;
  std::thread worker([&] {
    try {
      const int fd = ::open(ns_path.c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0)
        throw netlab_error(errno_text("run_in_host: cannot open " + ns_path));
      // Network namespaces are per thread: only this thread moves.
      const int rc = ::setns(fd, CLONE_NEWNET);
      const int setns_errno = errno;
      ::close(fd);
      if (rc != 0)
        throw netlab_error("run_in_host: setns(" + ns_path + "): " + std::strerror(setns_errno));
      f();
    } catch (...) {
      error = std::current_exception();
    }
  });
  worker.join();
  if (error)
    std::rethrow_exception(error);
}

int netlab::cleanup_stale(const std::string& prefix) {
  if (prefix.empty())
    throw netlab_error("cleanup_stale needs a non-empty prefix");
  std::string ip;
  check_privileges(ip);
  int removed = 0;
  for (const auto& name : list_namespaces(ip)) {
    if (name.rfind(prefix, 0) != 0)
      continue;
    const std::string rest = name.substr(prefix.size());
    std::size_t digits = 0;
    while (digits < rest.size() && std::isdigit(static_cast<unsigned char>(rest[digits])))
      ++digits;
    if (digits > 0 && digits <= 9 && digits < rest.size() && rest[digits] == '-' &&
        pid_alive(static_cast<pid_t>(std::stol(rest.substr(0, digits)))))
      continue;
    remove_namespace(ip, name);
    ++removed;
  }
  return removed;
}

}  // namespace ddactor
