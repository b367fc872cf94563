#pragma once
// metrics_http_server: the HTTP endpoint of a peer's monitoring (`monitoring.listen`).
//
// Serves, on its own threads so that a scrape never waits on training (and training never
// waits on a scrape):
//   GET /metrics  the registry in the Prometheus text format 0.0.4
//   GET /healthz  {"status": ..., "healthy": ..., "detail": ...} from a callback; 200 when
//                 healthy, 503 when not (or when the callback throws)
//   pages added with add_page (the swarm status page: monitoring/status_page.hpp)
//   anything else 404
// Owns the listening socket and the thread of its runtime/http_server: one poll loop with a
// deadline per request and a bounded number of connections, so that clients that send slowly
// cannot starve a scrape or a health probe.
//
// Lifecycle:  stopped --start()--> running --stop() / destructor--> stopped
// start() returns once the socket is bound and accepting; stop() returns once every thread of
// the server has ended. Thread-safety: start(), stop() and the destructor must be called by one
// owner (not concurrently); port() and running() may be called from any thread. The registry
// and the health callback must outlive the server (or at least its stop()).

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>

#include "monitoring/metrics_registry.hpp"
#include "runtime/http_server.hpp"

namespace ddactor {

/// The server could not start: address in use, unresolvable host, malformed `host:port`.
class metrics_server_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// What /healthz reports.
struct health_report {
  bool healthy = true;
  std::string status = "ok";  ///< one word: "starting", "training", "averaging", "failing", ...
  std::string detail;         ///< free text for a human, may be empty
};

/// A `host:port` to listen on; port 0 asks the system for a free one.
struct listen_address {
  std::string host;
  std::uint16_t port = 0;
};

/// Parses "host:port", "[ipv6]:port" or ":port" (all interfaces, 0.0.0.0). Throws
/// metrics_server_error naming the text when it is not one of these.
listen_address parse_listen_address(std::string_view text);

class metrics_http_server {
 public:
  using health_callback = std::function<health_report()>;

  /// Without a health callback /healthz always answers 200 {"status":"ok",...}.
  explicit metrics_http_server(const metrics_registry& registry, health_callback health = {});
  ~metrics_http_server();
  metrics_http_server(const metrics_http_server&) = delete;
  metrics_http_server& operator=(const metrics_http_server&) = delete;

  /// Another GET page (such as the status page at "/"), answered by `page` on the server's
  /// thread (it must be quick). Before start().
  using page_callback = std::function<http_response(const http_request&)>;
  void add_page(const std::string& path, page_callback page) { extra_pages_[path] = std::move(page); }

  /// Binds and starts serving, over TLS where `tls` is set (monitoring.tls_certificate_file).
  /// Throws metrics_server_error if the address cannot be bound (for example the port is
  /// taken) or if the server is already running.
  void start(const listen_address& address, std::shared_ptr<const tls_server_context> tls = {});
  void start(const std::string& host, std::uint16_t port) { start(listen_address{host, port}); }

  /// Stops accepting, finishes or drops open connections, joins every thread. Idempotent.
  void stop();

  /// The bound port (the real one when started with port 0); 0 when not running.
  std::uint16_t port() const noexcept { return bound_port_.load(std::memory_order_acquire); }
  bool running() const noexcept { return port() != 0; }

 private:
  struct implementation;

  const metrics_registry& registry_;
  health_callback health_;
  std::map<std::string, page_callback> extra_pages_;
  std::unique_ptr<implementation> implementation_;
  std::atomic<std::uint16_t> bound_port_{0};
};

/// The JSON body /healthz sends for `report`.
std::string render_health_json(const health_report& report);

}  // namespace ddactor
