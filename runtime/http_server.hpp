#pragma once
// A small HTTP/1.1 server for ddactor's endpoints (/metrics, /healthz and the status page of a
// peer, `serve`'s /v1/generate) that slow or hostile clients cannot starve.
//
// One thread runs a poll() loop over non-blocking sockets: no client ever holds a worker, so a
// connection that sends one byte a second costs a slot and nothing else. Every connection has a
// deadline for its whole request (head and body) and one for writing the answer; the number of
// connections is bounded, in all and per client address (beyond that: 503 and close). A handler
// answers at once or later, from any thread, through its http_reply; while it works, the loop
// watches the client, and when the client hangs up the reply is cancelled (on_cancel runs) so
// that the work can stop. Every answer closes its connection (Connection: close), which
// Prometheus, browsers and curl all accept.
//
// With http_server_options::tls, every connection is TLS: a client speaking plain HTTP to it gets
// its connection closed and never an answer in the clear (past the connection budget too: the
// plain 503 is not sent, the connection is closed).
//
// Not supported, refused with a clear status: chunked request bodies (411), request heads over
// max_head_bytes (431) or bodies over max_body_bytes (413), other HTTP versions (505).
//
// Thread-safety: handle(), start() and stop() belong to one owner; http_reply may be used from
// any thread; handlers run on the server's thread and must not block it.

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace ddactor {

class tls_server_context;

class http_server_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct http_request {
  std::string method;
  std::string path;   // without the query
  std::string query;  // after '?', undecoded
  std::map<std::string, std::string> headers;  // names in lower case
  std::string body;
  std::string client;  // the peer's address
};

struct http_response {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // extra ones, e.g. Retry-After
};

/// A JSON body {"error": text} with the given status.
http_response http_error(int status, const std::string& text);

/// The answer to one request: sent once, now or later, from any thread.
class http_reply {
 public:
  struct shared;
  explicit http_reply(std::shared_ptr<shared> state) : state_(std::move(state)) {}

  /// Sends the answer; later calls do nothing. Does nothing either once cancelled.
  void send(http_response response) const;
  /// The client hung up (or the server stopped) before the answer was sent.
  bool cancelled() const;
  /// Runs `f` once when the reply is cancelled (at once, when it already is). On the server's
  /// thread or the caller's: keep it short.
  void on_cancel(std::function<void()> f) const;

 private:
  std::shared_ptr<shared> state_;
};

using http_handler = std::function<void(const http_request&, const http_reply&)>;

struct http_server_options {
  size_t max_connections = 64;
  size_t max_connections_per_client = 8;
  /// From the first byte of a request to its last.
  std::chrono::milliseconds request_timeout{10'000};
  /// For sending an answer once it is ready.
  std::chrono::milliseconds write_timeout{30'000};
  size_t max_head_bytes = 16 * 1024;
  size_t max_body_bytes = 1 << 20;
  /// Set: every connection speaks TLS (runtime/tls_server_context.hpp); its handshake counts in
  /// request_timeout. Null: plain HTTP.
  std::shared_ptr<const tls_server_context> tls;
};

class http_server {
 public:
  explicit http_server(http_server_options options = {});
  ~http_server();
  http_server(const http_server&) = delete;
  http_server& operator=(const http_server&) = delete;

  /// Routes METHOD PATH (exact match) to `handler`. Before start().
  void handle(const std::string& method, const std::string& path, http_handler handler);

  /// Binds host:port (port 0: any free one), starts the loop; returns the bound port. Throws
  /// http_server_error saying why the address cannot be used.
  uint16_t start(const std::string& host, uint16_t port);
  /// Closes every connection (pending replies are cancelled) and joins the thread. Idempotent.
  void stop();
  uint16_t port() const;

 private:
  struct loop;
  http_server_options options_;
  std::map<std::pair<std::string, std::string>, http_handler> routes_;
  std::unique_ptr<loop> loop_;
};

} // namespace ddactor
