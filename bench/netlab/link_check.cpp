// ddactor_netlab_check: validates the network lab (netlab.hpp) on this machine. It builds a lab
// without shaping and one shaped to --rate-mbit with --delay-ms one-way delay (3 hosts each),
// and measures with its own TCP sender, receiver and echo server, all in this process (sockets
// made inside each host's namespace):
//   - bulk throughput of one TCP flow (--megabytes, default 50) against the line rate
//     (100 Mbit/s = 11.92 MiB/s; TCP/IP headers cost about 4-5% of it), direct and through the
//     host's relay when the delay is not in the kernel, in both directions;
//   - two hosts sending to a third at once (they share its download rate);
//   - TCP connect time and 1-byte echo round trip (expected 2 x delay).
// It then checks the numbers (exit 1 if one is off) and that no namespace of this process is
// left. --hold-seconds keeps the shaped lab up (to poke at it, or to test cleanup on Ctrl-C);
// --throw-after-setup throws once it is built (to test cleanup on an exception).
//
// usage: ddactor_netlab_check [--rate-mbit 100] [--delay-ms 50] [--megabytes 50]
//                             [--delay-mode automatic|kernel|relay] [--hold-seconds S]
//                             [--throw-after-setup]
// Needs root; prints "skipped: <reason>" and exits 0 where the lab cannot be built.
#include "bench/netlab/netlab.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace {

using namespace ddactor;
using namespace std::chrono_literals;
using check_clock = std::chrono::steady_clock;

constexpr double mib = 1024.0 * 1024.0;

double seconds_between(check_clock::time_point a, check_clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

// The socket belongs to host i's namespace for life; it is used from any thread afterwards.
int tcp_socket_in(const netlab& lab, int host) {
  int fd = -1;
  lab.run_in_host(host, [&] { fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0); });
  if (fd < 0)
    throw std::runtime_error(std::string("socket: ") + std::strerror(errno));
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

sockaddr_in ipv4(const std::string& host, uint16_t port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  if (::inet_pton(AF_INET, host.c_str(), &a.sin_addr) != 1)
    throw std::runtime_error("bad IPv4 address " + host);
  return a;
}

struct listener {
  int fd = -1;
  uint16_t port = 0;
};

listener listen_in(const netlab& lab, int host) {
  listener l;
  l.fd = tcp_socket_in(lab, host);
  int one = 1;
  ::setsockopt(l.fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  auto a = ipv4(lab.address(host), 0);
  if (::bind(l.fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(l.fd, 64) != 0)
    throw std::runtime_error(std::string("bind/listen: ") + std::strerror(errno));
  socklen_t length = sizeof a;
  ::getsockname(l.fd, reinterpret_cast<sockaddr*>(&a), &length);
  l.port = ntohs(a.sin_port);
  return l;
}

void connect_or_throw(int fd, const std::string& host, uint16_t port) {
  auto a = ipv4(host, port);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0)
    throw std::runtime_error("connect to " + host + ":" + std::to_string(port) + ": " +
                             std::strerror(errno));
}

void send_bytes(int fd, std::size_t total) {
  std::vector<char> block(256 * 1024, 'x');
  std::size_t sent = 0;
  while (sent < total) {
    const ssize_t n = ::send(fd, block.data(), std::min(block.size(), total - sent), MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      throw std::runtime_error(std::string("send: ") + std::strerror(errno));
    }
    sent += static_cast<std::size_t>(n);
  }
}

// Reads to end of stream; returns the byte count and when the last byte arrived.
std::pair<std::size_t, check_clock::time_point> receive_all(int fd) {
  std::vector<char> block(256 * 1024);
  std::size_t total = 0;
  auto last = check_clock::now();
  while (true) {
    const ssize_t n = ::recv(fd, block.data(), block.size(), 0);
    if (n > 0) {
      total += static_cast<std::size_t>(n);
      last = check_clock::now();
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else {
      return {total, last};
    }
  }
}

struct bulk_result {
  double mib_per_s = 0;
  double seconds = 0;
};

// `senders` each send `bytes` to `receiver` at the same time, each on its own connection to
// port `port` of the receiver's address; the receiver accepts them all. With reverse, the
// receiver's accepted sockets send and the connecting hosts read (one sender only).
bulk_result bulk(const netlab& lab, const std::vector<int>& senders, int receiver,
                 const listener& server, uint16_t port, std::size_t bytes, bool reverse = false) {
  std::vector<int> clients;
  for (int s : senders)
    clients.push_back(tcp_socket_in(lab, s));
  std::vector<check_clock::time_point> last(senders.size());
  std::vector<std::size_t> got(senders.size());
  const auto start = check_clock::now();
  std::thread accepting([&] {
    std::vector<std::thread> handlers;
    for (std::size_t k = 0; k < senders.size(); ++k) {
      const int fd = ::accept(server.fd, nullptr, nullptr);
      if (fd < 0)
        break;
      handlers.emplace_back([&, fd, k] {
        if (reverse) {
          send_bytes(fd, bytes);
        } else {
          std::tie(got[k], last[k]) = receive_all(fd);
        }
        ::close(fd);
      });
    }
    for (auto& h : handlers)
      h.join();
  });
  std::vector<std::thread> sending;
  for (std::size_t k = 0; k < clients.size(); ++k)
    sending.emplace_back([&, k] {
      connect_or_throw(clients[k], lab.address(receiver), port);
      if (reverse) {
        std::tie(got[k], last[k]) = receive_all(clients[k]);
      } else {
        send_bytes(clients[k], bytes);
        ::shutdown(clients[k], SHUT_WR);
        char c;
        while (::recv(clients[k], &c, 1, 0) > 0) {
        }
      }
      ::close(clients[k]);
    });
  for (auto& t : sending)
    t.join();
  accepting.join();
  std::size_t total = 0;
  auto end = start;
  for (std::size_t k = 0; k < senders.size(); ++k) {
    total += got[k];
    end = std::max(end, last[k]);
  }
  if (total != bytes * senders.size())
    throw std::runtime_error("bulk transfer lost bytes: " + std::to_string(total) + " of " +
                             std::to_string(bytes * senders.size()));
  bulk_result r;
  r.seconds = seconds_between(start, end);
  r.mib_per_s = static_cast<double>(total) / mib / r.seconds;
  return r;
}

struct round_trip_result {
  double connect_ms = 0;  // medians
  double echo_ms = 0;
};

// The echo server answers every byte; `samples` fresh connections, each one 1-byte echo.
round_trip_result round_trips(const netlab& lab, int client, int server_host,
                              const listener& server, uint16_t port, int samples) {
  std::thread echo([&] {
    for (int k = 0; k < samples; ++k) {
      const int fd = ::accept(server.fd, nullptr, nullptr);
      if (fd < 0)
        return;
      int one = 1;
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      char c;
      while (::recv(fd, &c, 1, 0) == 1)
        ::send(fd, &c, 1, MSG_NOSIGNAL);
      ::close(fd);
    }
  });
  std::vector<double> connects;
  std::vector<double> echoes;
  for (int k = 0; k < samples; ++k) {
    const int fd = tcp_socket_in(lab, client);
    const auto t0 = check_clock::now();
    connect_or_throw(fd, lab.address(server_host), port);
    const auto t1 = check_clock::now();
    char c = 'p';
    ::send(fd, &c, 1, MSG_NOSIGNAL);
    if (::recv(fd, &c, 1, 0) != 1)
      throw std::runtime_error("echo: no answer");
    const auto t2 = check_clock::now();
    ::close(fd);
    connects.push_back(seconds_between(t0, t1) * 1e3);
    echoes.push_back(seconds_between(t1, t2) * 1e3);
  }
  echo.join();
  std::sort(connects.begin(), connects.end());
  std::sort(echoes.begin(), echoes.end());
  return {connects[connects.size() / 2], echoes[echoes.size() / 2]};
}

struct options {
  double rate_mbit = 100;
  double delay_ms = 50;
  std::size_t megabytes = 50;
  netlab_delay_mode mode = netlab_delay_mode::automatic;
  int hold_seconds = 0;
  bool throw_after_setup = false;
};

int failures = 0;

void verdict(bool ok, const std::string& what) {
  if (!ok) {
    ++failures;
    std::printf("  FAIL: %s\n", what.c_str());
  }
}

std::vector<std::string> our_namespaces() {
  std::vector<std::string> ours;
  FILE* pipe = ::popen("ip netns list 2>/dev/null", "r");
  if (pipe == nullptr)
    return ours;
  char line[512];
  const std::string prefix = "ddl" + std::to_string(::getpid()) + "-";
  while (std::fgets(line, sizeof line, pipe) != nullptr)
    if (std::string(line).rfind(prefix, 0) == 0)
      ours.push_back(std::string(line).substr(0, std::string(line).find_first_of(" \n")));
  ::pclose(pipe);
  return ours;
}

void check_unshaped(const options& o) {
  netlab lab(3);
  const std::size_t bytes = o.megabytes * 1000 * 1000;
  const auto server = listen_in(lab, 1);
  const auto flow = bulk(lab, {0}, 1, server, server.port, bytes);
  const auto rtt = round_trips(lab, 0, 1, server, server.port, 11);
  ::close(server.fd);
  const double line = 100e6 / 8 / mib;
  std::printf("unshaped lab (3 hosts, bridge, no qdiscs)\n");
  std::printf("  bulk h0->h1        %9.1f MiB/s   %6.1f x 100 Mbit/s line rate\n", flow.mib_per_s,
              flow.mib_per_s / line);
  std::printf("  connect            %9.3f ms\n", rtt.connect_ms);
  std::printf("  echo round trip    %9.3f ms\n", rtt.echo_ms);
  verdict(flow.mib_per_s > 5 * line, "unshaped throughput should exceed 5 x 100 Mbit/s");
}

void check_shaped(const options& o) {
  netlab_options lab_options;
  lab_options.rate_mbit = o.rate_mbit;
  lab_options.one_way_delay_ms = o.delay_ms;
  lab_options.delay_mode = o.mode;
  const auto built = check_clock::now();
  netlab lab(3, lab_options);
  const double setup_s = seconds_between(built, check_clock::now());
  const std::size_t bytes = o.megabytes * 1000 * 1000;
  const double line = o.rate_mbit * 1e6 / 8 / mib;
  const double two_d = 2 * o.delay_ms;
  std::printf("shaped lab: %.0f Mbit/s per host and direction (line rate %.2f MiB/s), one-way "
              "delay %.1f ms by %s; built in %.2f s; netem %s\n",
              o.rate_mbit, line, o.delay_ms,
              lab.kernel_delay() ? "netem" : (lab.needs_relays() ? "relays" : "nothing"), setup_s,
              lab.netem_available() ? "available" : "missing");
  if (o.throw_after_setup)
    throw std::runtime_error("deliberate exception after building the lab (--throw-after-setup)");

  const auto server = listen_in(lab, 1);
  const uint16_t relayed = lab.add_relay(1, server.port);
  if (o.hold_seconds > 0) {
    // A spawned process and a relay are up, so that an interrupted run shows them cleaned too.
    const pid_t sleeper = lab.spawn(2, {"sleep", std::to_string(o.hold_seconds + 60)},
                                    lab.options().log_directory / "sleep.log");
    std::printf("  holding the lab for %d s (namespaces %s ... %s, relay port %u, sleep pid %d)\n",
                o.hold_seconds, lab.namespace_name(0).c_str(), lab.namespace_name(2).c_str(),
                relayed, static_cast<int>(sleeper));
    std::fflush(stdout);
    std::this_thread::sleep_for(std::chrono::seconds(o.hold_seconds));
  }
  const char* path = lab.needs_relays() ? "via relay" : "         ";
  const auto report = [&](const char* what, const bulk_result& r, double lo) {
    std::printf("  %-32s %7.2f MiB/s  %5.3f x line rate  (%.2f s)\n", what, r.mib_per_s,
                r.mib_per_s / line, r.seconds);
    verdict(r.mib_per_s >= lo * line && r.mib_per_s <= 1.02 * line,
            std::string(what) + ": expected " + std::to_string(lo) + "..1.02 x line rate");
  };
  report("bulk h0->h1 direct (rate only)", bulk(lab, {0}, 1, server, server.port, bytes),
         lab.kernel_delay() ? 0.80 : 0.88);
  report((std::string("bulk h0->h1 ") + path).c_str(), bulk(lab, {0}, 1, server, relayed, bytes),
         0.80);
  report((std::string("bulk h1->h0 ") + path).c_str(),
         bulk(lab, {0}, 1, server, relayed, bytes, true), 0.80);
  report((std::string("fan-in h0+h2->h1 ") + path).c_str(),
         bulk(lab, {0, 2}, 1, server, relayed, bytes), 0.80);

  const auto direct = round_trips(lab, 0, 1, server, server.port, 11);
  const auto delayed = round_trips(lab, 0, 1, server, relayed, 11);
  ::close(server.fd);
  std::printf("  connect direct     %9.3f ms   echo round trip direct %9.3f ms\n",
              direct.connect_ms, direct.echo_ms);
  std::printf("  connect %s %9.3f ms   echo round trip %s %9.3f ms = %.3f x 2D (%.0f ms)\n",
              path, delayed.connect_ms, path, delayed.echo_ms, delayed.echo_ms / two_d, two_d);
  verdict(delayed.echo_ms >= two_d && delayed.echo_ms <= two_d + 15,
          "echo round trip should be 2D .. 2D + 15 ms");
  if (lab.kernel_delay())
    verdict(delayed.connect_ms >= two_d, "with netem, connect should take a round trip");
}

int parse_arguments(int argc, char** argv, options& o) {
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    const auto value = [&]() -> std::string {
      if (i + 1 >= argc)
        throw std::invalid_argument("missing value after " + flag);
      return argv[++i];
    };
    if (flag == "--rate-mbit")
      o.rate_mbit = std::stod(value());
    else if (flag == "--delay-ms")
      o.delay_ms = std::stod(value());
    else if (flag == "--megabytes")
      o.megabytes = std::stoul(value());
    else if (flag == "--hold-seconds")
      o.hold_seconds = std::stoi(value());
    else if (flag == "--throw-after-setup")
      o.throw_after_setup = true;
    else if (flag == "--delay-mode") {
      const std::string m = value();
      if (m == "automatic")
        o.mode = netlab_delay_mode::automatic;
      else if (m == "kernel")
        o.mode = netlab_delay_mode::kernel;
      else if (m == "relay")
        o.mode = netlab_delay_mode::relay;
      else
        throw std::invalid_argument("--delay-mode is automatic, kernel or relay");
    } else {
      throw std::invalid_argument("unknown option " + flag);
    }
  }
  if (!(o.rate_mbit > 0) || !(o.delay_ms > 0) || o.megabytes == 0)
    throw std::invalid_argument("--rate-mbit, --delay-ms and --megabytes must be positive");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  options o;
  try {
    parse_arguments(argc, argv, o);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ddactor_netlab_check: %s\n", e.what());
    return 2;
  }
  int code = 0;
  try {
    netlab::cleanup_stale("ddl");
    check_unshaped(o);
    check_shaped(o);
  } catch (const netlab_unavailable& e) {
    std::printf("skipped: %s\n", e.what());
    return 0;
  } catch (const std::exception& e) {
    std::printf("error: %s\n", e.what());
    code = 1;
  }
  const auto left = our_namespaces();
  std::printf("left behind: %s\n", left.empty() ? "nothing" : "namespaces:");
  for (const auto& name : left)
    std::printf("  %s\n", name.c_str());
  verdict(left.empty(), "the lab must remove its namespaces");
  if (failures > 0) {
    std::printf("%d check(s) failed\n", failures);
    return 1;
  }
  if (code == 0)
    std::printf("all checks passed\n");
  return code;
}
