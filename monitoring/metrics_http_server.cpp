// metrics_http_server: /metrics and /healthz over cpp-httplib (Debian's libcpp-httplib).
// A fresh httplib::Server per start() keeps restarts free of leftover state; one thread runs
// its accept loop and a small pool answers requests.

#include "monitoring/metrics_http_server.hpp"

#include <httplib.h>
#include <sys/socket.h>

#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstring>
#include <thread>

#include <nlohmann/json.hpp>

#include "monitoring/prometheus_exposition.hpp"

namespace ddactor {

namespace {

/// Scrapes are rare and cheap; a few workers let a slow client not block Prometheus.
constexpr std::size_t worker_threads = 4;
/// Bounds how long stop() may wait for a client that keeps its connection open.
constexpr time_t keep_alive_timeout_seconds = 1;

constexpr std::string_view json_content_type = "application/json";

}  // namespace

listen_address parse_listen_address(std::string_view text) {
  const auto fail = [&](std::string_view why) -> listen_address {
    throw metrics_server_error("invalid listen address '" + std::string(text) + "': " +
                               std::string(why) + " (expected host:port, [ipv6]:port or :port)");
  };
  const std::size_t colon = text.rfind(':');
  if (colon == std::string_view::npos) return fail("no ':port'");
  std::string_view host = text.substr(0, colon);
  const std::string_view port_text = text.substr(colon + 1);
  if (host.starts_with('[')) {
    if (!host.ends_with(']') || host.size() < 3) return fail("unbalanced '[' ']'");
    host = host.substr(1, host.size() - 2);
  } else if (host.find(':') != std::string_view::npos) {
    return fail("an IPv6 host must be written in brackets");
  }
  unsigned port = 0;
  const auto [end, error] =
      std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (port_text.empty() || error != std::errc() || end != port_text.data() + port_text.size() ||
      port > 65535)
    return fail("the port must be a number from 0 to 65535");
  return listen_address{host.empty() ? std::string("0.0.0.0") : std::string(host),
                        static_cast<std::uint16_t>(port)};
}

std::string render_health_json(const health_report& report) {
  nlohmann::json body = {
      {"status", report.status}, {"healthy", report.healthy}, {"detail", report.detail}};
  // Replace rather than throw on invalid UTF-8: the detail may quote an error from anywhere.
  return body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

struct metrics_http_server::implementation {
  httplib::Server server;
  std::thread accept_thread;
  std::atomic<bool> accept_loop_ended{false};
};

metrics_http_server::metrics_http_server(const metrics_registry& registry,
                                         health_callback health)
    : registry_(registry), health_(std::move(health)) {}

metrics_http_server::~metrics_http_server() { stop(); }

void metrics_http_server::start(const listen_address& address) {
  if (implementation_)
    throw metrics_server_error("metrics HTTP server already running on port " +
                               std::to_string(port()));
  auto state = std::make_unique<implementation>();
  httplib::Server& server = state->server;

  server.new_task_queue = [] { return new httplib::ThreadPool(worker_threads); };
  server.set_keep_alive_timeout(keep_alive_timeout_seconds);
  // httplib's default sets SO_REUSEPORT, which would let a second server share a taken port
  // silently. SO_REUSEADDR alone still refuses a port someone listens on (but not TIME_WAIT).
  server.set_socket_options([](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });

  server.Get("/metrics", [this](const httplib::Request&, httplib::Response& response) {
    response.set_content(render_prometheus_text(registry_),
                         std::string(prometheus_text_content_type));
  });
  server.Get("/healthz", [this](const httplib::Request&, httplib::Response& response) {
    health_report report;
    if (health_) {
      try {
        report = health_();
      } catch (const std::exception& error) {
        report = health_report{false, "error", error.what()};
      } catch (...) {
        report = health_report{false, "error", "health callback threw a non-standard exception"};
      }
    }
    response.status = report.healthy ? 200 : 503;
    response.set_content(render_health_json(report), std::string(json_content_type));
  });

  errno = 0;
  const int port = address.port == 0 ? server.bind_to_any_port(address.host)
                                     : (server.bind_to_port(address.host, address.port)
                                            ? static_cast<int>(address.port)
                                            : -1);
  if (port <= 0) {
    const int system_error = errno;
    throw metrics_server_error(
        "metrics HTTP server cannot listen on " + address.host + ":" +
        std::to_string(address.port) + ": " +
        (system_error != 0 ? std::strerror(system_error) : "cannot bind") +
        " (is the port taken by another process, or the host not an address of this machine?)");
  }

  implementation* raw = state.get();
  state->accept_thread = std::thread([raw] {
    raw->server.listen_after_bind();
    raw->accept_loop_ended.store(true, std::memory_order_release);
  });
  // httplib's stop() does nothing until the accept loop has started: wait for it, so that a
  // stop() right after start() cannot leave the thread running forever.
  while (!raw->server.is_running() && !raw->accept_loop_ended.load(std::memory_order_acquire))
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  if (!raw->server.is_running()) {
    state->accept_thread.join();
    throw metrics_server_error("metrics HTTP server on " + address.host + ":" +
                               std::to_string(port) + " stopped right after it started");
  }
  implementation_ = std::move(state);
  bound_port_.store(static_cast<std::uint16_t>(port), std::memory_order_release);
}

void metrics_http_server::stop() {
  if (!implementation_) return;
  bound_port_.store(0, std::memory_order_release);
  implementation_->server.stop();
  if (implementation_->accept_thread.joinable()) implementation_->accept_thread.join();
  implementation_.reset();
}

}  // namespace ddactor
