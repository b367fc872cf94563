// metrics_http_server: /metrics, /healthz and extra pages over runtime/http_server (one poll
// loop, so slow clients cannot take the endpoint away from Prometheus). A fresh server per
// start() keeps restarts free of leftover state.

#include "monitoring/metrics_http_server.hpp"

#include <charconv>

#include <nlohmann/json.hpp>

#include "monitoring/prometheus_exposition.hpp"

namespace ddactor {

namespace {

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
  http_server server;
  explicit implementation(http_server_options options) : server(std::move(options)) {}
};

metrics_http_server::metrics_http_server(const metrics_registry& registry,
                                         health_callback health)
    : registry_(registry), health_(std::move(health)) {}

metrics_http_server::~metrics_http_server() { stop(); }

void metrics_http_server::start(const listen_address& address,
                                std::shared_ptr<const tls_server_context> tls) {
  if (implementation_)
    throw metrics_server_error("metrics HTTP server already running on port " +
                               std::to_string(port()));
  http_server_options options;
  options.tls = std::move(tls);
  auto state = std::make_unique<implementation>(std::move(options));
  // Handlers run on the server's one loop thread: rendering the registry takes a millisecond,
  // and health comes from state, never from an actor that may be busy.
  state->server.handle("GET", "/metrics", [this](const http_request&, const http_reply& reply) {
    http_response response;
    response.content_type = std::string(prometheus_text_content_type);
    response.body = render_prometheus_text(registry_);
    reply.send(std::move(response));
  });
  state->server.handle("GET", "/healthz", [this](const http_request&, const http_reply& reply) {
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
    http_response response;
    response.status = report.healthy ? 200 : 503;
    response.content_type = std::string(json_content_type);
    response.body = render_health_json(report);
    reply.send(std::move(response));
  });
  for (const auto& [path, page] : extra_pages_)
    state->server.handle("GET", path, [page = page](const http_request& request,
                                                     const http_reply& reply) {
      reply.send(page(request));
    });
  uint16_t port = 0;
  try {
    port = state->server.start(address.host, address.port);
  } catch (const http_server_error& e) {
    throw metrics_server_error(std::string("metrics HTTP server: ") + e.what());
  }
  implementation_ = std::move(state);
  bound_port_.store(port, std::memory_order_release);
}

void metrics_http_server::stop() {
  if (!implementation_) return;
  bound_port_.store(0, std::memory_order_release);
  implementation_->server.stop();
  implementation_.reset();
}

}  // namespace ddactor
