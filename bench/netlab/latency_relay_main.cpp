// ddactor_latency_relay: the command-line front of latency_relay (see latency_relay.hpp), run by
// the network lab inside a host's namespace in front of a peer's port. It prints one line
// "listening on HOST:PORT" (the real port, when 0 was asked for) once it accepts connections,
// relays until SIGTERM or SIGINT, then prints its counters to stderr and exits 0.
//
// usage: ddactor_latency_relay --listen HOST:PORT --target HOST:PORT --delay-ms D
//                              [--source-delay ADDRESS=MS]... [--jitter-ms J] [--seed N]
//                              [--max-buffer-bytes N] [--nice N]
// --source-delay adds MS to connections from ADDRESS (the lab's per-host access delays);
// --jitter-ms spreads each read's delay uniformly by +-J without reordering a stream.
// --nice lowers (negative: raises, as root) its scheduling priority: the lab raises it so that
// busy peers on the same cores delay bytes less beyond D (the kernel's netem has no such
// problem).
#include "bench/netlab/latency_relay.hpp"

#include <sys/resource.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <optional>
#include <string>

namespace {

ddactor::latency_relay* running_relay = nullptr;

void on_stop_signal(int) {
  if (running_relay != nullptr)
    running_relay->stop();
}

// "12.5" -> 12500 us; nothing unless a number of milliseconds from 0 to 3600000.
std::optional<std::chrono::microseconds> milliseconds_of(const std::string& value) {
  std::size_t used = 0;
  const double ms = std::stod(value, &used);
  if (used != value.size() || !(ms >= 0.0) || ms > 3.6e6)
    return std::nullopt;
  return std::chrono::microseconds(static_cast<int64_t>(ms * 1000.0 + 0.5));
}

int usage(const char* why) {
  std::fprintf(stderr,
               "ddactor_latency_relay: %s\n"
               "usage: ddactor_latency_relay --listen HOST:PORT --target HOST:PORT --delay-ms D\n"
               "                             [--source-delay ADDRESS=MS]... [--jitter-ms J]\n"
               "                             [--seed N] [--max-buffer-bytes N] [--nice N]\n",
               why);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  ddactor::latency_relay_options options;
  bool has_listen = false;
  bool has_target = false;
  bool has_delay = false;
  int nice = 0;
  try {
    for (int i = 1; i < argc; ++i) {
      const std::string flag = argv[i];
      if (i + 1 >= argc)
        return usage(("missing value after " + flag).c_str());
      const std::string value = argv[++i];
      if (flag == "--listen") {
        options.listen = ddactor::parse_host_port(value);
        has_listen = true;
      } else if (flag == "--target") {
        options.target = ddactor::parse_host_port(value);
        has_target = true;
      } else if (flag == "--delay-ms" || flag == "--jitter-ms") {
        const auto time = milliseconds_of(value);
        if (!time)
          return usage((flag + " must be a number of milliseconds from 0 to 3600000").c_str());
        (flag == "--delay-ms" ? options.delay : options.jitter) = *time;
        has_delay = has_delay || flag == "--delay-ms";
      } else if (flag == "--source-delay") {
        options.source_delays.push_back(ddactor::parse_source_delay(value));
      } else if (flag == "--seed") {
        std::size_t used = 0;
        options.seed = std::stoull(value, &used);
        if (used != value.size())
          return usage("--seed must be a number");
      } else if (flag == "--max-buffer-bytes") {
        std::size_t used = 0;
        const unsigned long long bytes = std::stoull(value, &used);
        if (used != value.size() || bytes == 0 || bytes > (1ull << 34))
          return usage("--max-buffer-bytes must be from 1 to 2^34");
        options.max_buffered_bytes = static_cast<std::size_t>(bytes);
      } else if (flag == "--nice") {
        std::size_t used = 0;
        nice = std::stoi(value, &used);
        if (used != value.size() || nice < -20 || nice > 19)
          return usage("--nice must be from -20 to 19");
      } else {
        return usage(("unknown option " + flag).c_str());
      }
    }
  } catch (const std::logic_error&) {  // std::stod / std::stoull on non-numbers
    return usage("bad number");
  } catch (const std::exception& e) {
    return usage(e.what());
  }
  if (!has_listen || !has_target || !has_delay)
    return usage("--listen, --target and --delay-ms are required");

  if (nice != 0 && ::setpriority(PRIO_PROCESS, 0, nice) != 0)
    std::fprintf(stderr, "ddactor_latency_relay: cannot set nice %d: %s (going on)\n", nice,
                 std::strerror(errno));
  try {
    ddactor::latency_relay relay(options);
    running_relay = &relay;
    std::signal(SIGTERM, on_stop_signal);
    std::signal(SIGINT, on_stop_signal);
    std::signal(SIGPIPE, SIG_IGN);
    std::printf("listening on %s:%u -> %s:%u, delay %.3f ms each way (jitter %.3f ms, %zu "
                "source(s) with more)\n",
                options.listen.host.c_str(), relay.listen_port(), options.target.host.c_str(),
                options.target.port, static_cast<double>(options.delay.count()) / 1000.0,
                static_cast<double>(options.jitter.count()) / 1000.0,
                options.source_delays.size());
    std::fflush(stdout);
    relay.run();
    running_relay = nullptr;
    const auto s = relay.stats();
    std::fprintf(stderr,
                 "ddactor_latency_relay: %llu connections (%llu closed, %llu reset, %llu target "
                 "refused), %llu bytes to target, %llu bytes to clients, peak queue %zu bytes\n",
                 static_cast<unsigned long long>(s.connections_accepted),
                 static_cast<unsigned long long>(s.connections_closed),
                 static_cast<unsigned long long>(s.connections_aborted),
                 static_cast<unsigned long long>(s.target_connect_failures),
                 static_cast<unsigned long long>(s.bytes_to_target),
                 static_cast<unsigned long long>(s.bytes_to_client), s.peak_buffered_bytes);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ddactor_latency_relay: %s\n", e.what());
    return 1;
  }
}
