// The poll() loop of ddactor's HTTP endpoints; see http_server.hpp.
#include "runtime/http_server.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <mutex>
#include <optional>
#include <thread>

#include <nlohmann/json.hpp>

#include "runtime/tls_server_context.hpp"

namespace ddactor {

namespace {

using clock_type = std::chrono::steady_clock;

// Longest the loop sleeps without a deadline due: bounds how late stop() is noticed.
constexpr std::chrono::milliseconds idle_wakeup{500};

const char* reason_phrase(int status) {
  switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 411: return "Length Required";
    case 413: return "Payload Too Large";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return "Status";
  }
}

std::string serialize(const http_response& r) {
  std::string out = "HTTP/1.1 " + std::to_string(r.status) + " " + reason_phrase(r.status) +
                    "\r\nContent-Type: " + r.content_type +
                    "\r\nContent-Length: " + std::to_string(r.body.size()) +
                    "\r\nConnection: close\r\n";
  for (const auto& [name, value] : r.headers)
    out += name + ": " + value + "\r\n";
  out += "\r\n";
  out += r.body;
  return out;
}

std::string lower(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return text;
}

std::string trim(const std::string& text) {
  const auto begin = text.find_first_not_of(" \t");
  if (begin == std::string::npos)
    return {};
  return text.substr(begin, text.find_last_not_of(" \t") - begin + 1);
}

std::string address_of(const sockaddr_storage& address) {
  char text[INET6_ADDRSTRLEN] = {};
  if (address.ss_family == AF_INET)
    ::inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in&>(address).sin_addr, text,
                sizeof text);
  else if (address.ss_family == AF_INET6)
    ::inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6&>(address).sin6_addr, text,
                sizeof text);
  return text;
}

void set_non_blocking(int fd) {
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL, 0) | O_NONBLOCK);
}

// A request parsed from the bytes read so far: complete, still incomplete, or refused.
struct parse_outcome {
  enum class kind { incomplete, complete, refused } what = kind::incomplete;
  http_request request;
  http_response refusal;
};

parse_outcome parse_request(const std::string& in, const http_server_options& options) {
  parse_outcome out;
  const auto head_end = in.find("\r\n\r\n");
  if (head_end == std::string::npos) {
    if (in.size() > options.max_head_bytes) {
      out.what = parse_outcome::kind::refused;
      out.refusal = http_error(431, "request head larger than " +
                                      std::to_string(options.max_head_bytes) + " bytes");
    }
    return out;
  }
  const auto refuse = [&](int status, const std::string& why) {
    out.what = parse_outcome::kind::refused;
    out.refusal = http_error(status, why);
    return out;
  };
  if (head_end > options.max_head_bytes)
    return refuse(431, "request head larger than " + std::to_string(options.max_head_bytes) +
                         " bytes");
  const auto line_end = in.find("\r\n");
  const std::string line = in.substr(0, line_end);
  const auto first = line.find(' ');
  const auto last = line.rfind(' ');
  if (first == std::string::npos || first == last)
    return refuse(400, "malformed request line");
  auto& r = out.request;
  r.method = line.substr(0, first);
  const std::string target = line.substr(first + 1, last - first - 1);
  const std::string version = line.substr(last + 1);
  if (version != "HTTP/1.1" && version != "HTTP/1.0")
    return refuse(505, "only HTTP/1.0 and HTTP/1.1 are served");
  if (target.empty() || target[0] != '/')
    return refuse(400, "the request target must be a path");
  const auto question = target.find('?');
  r.path = target.substr(0, question);
  if (question != std::string::npos)
    r.query = target.substr(question + 1);
  size_t at = line_end + 2;
  while (at < head_end) {
    const auto end = in.find("\r\n", at);
    const std::string header = in.substr(at, end - at);
    at = end + 2;
    const auto colon = header.find(':');
    if (colon == std::string::npos || colon == 0)
      return refuse(400, "malformed header line");
    r.headers[lower(header.substr(0, colon))] = trim(header.substr(colon + 1));
  }
  if (r.headers.count("transfer-encoding"))
    return refuse(411, "chunked bodies are not accepted; send Content-Length");
  size_t length = 0;
  if (auto it = r.headers.find("content-length"); it != r.headers.end()) {
    const auto& text = it->second;
    if (text.empty() || text.size() > 12 ||
        !std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; }))
      return refuse(400, "malformed Content-Length");
    length = std::stoull(text);
    if (length > options.max_body_bytes)
      return refuse(413, "body larger than " + std::to_string(options.max_body_bytes) + " bytes");
  }
  const size_t body_start = head_end + 4;
  if (in.size() < body_start + length)
    return out;  // the body is still on its way
  r.body = in.substr(body_start, length);
  out.what = parse_outcome::kind::complete;
  return out;
}

} // namespace

http_response http_error(int status, const std::string& text) {
  http_response r;
  r.status = status;
  r.content_type = "application/json";
  r.body = nlohmann::json{{"error", text}}.dump(-1, ' ', false,
                                                 nlohmann::json::error_handler_t::replace);
  return r;
}

// --- replies -------------------------------------------------------------------------------

struct http_reply::shared {
  std::mutex mutex;
  bool done = false;  // sent or cancelled
  bool cancelled = false;
  std::optional<http_response> response;
  std::vector<std::function<void()>> on_cancel;
  std::function<void()> wake;  // tells the loop the response is there

  void cancel() {
    std::vector<std::function<void()>> callbacks;
    {
      std::lock_guard<std::mutex> lock(mutex);
      if (done)
        return;
      done = true;
      cancelled = true;
      callbacks.swap(on_cancel);
    }
    for (auto& f : callbacks)
      f();
  }
};

void http_reply::send(http_response response) const {
  std::function<void()> wake;
  {
    std::lock_guard<std::mutex> lock(state_->mutex);
    if (state_->done)
      return;
    state_->done = true;
    state_->response = std::move(response);
    state_->on_cancel.clear();
    wake = state_->wake;
  }
  if (wake)
    wake();
}

bool http_reply::cancelled() const {
  std::lock_guard<std::mutex> lock(state_->mutex);
  return state_->cancelled;
}

void http_reply::on_cancel(std::function<void()> f) const {
  {
    std::lock_guard<std::mutex> lock(state_->mutex);
    if (!state_->cancelled) {
      if (!state_->done)
        state_->on_cancel.push_back(std::move(f));
      return;
    }
  }
  f();
}

// --- the loop --------------------------------------------------------------------------------

// Wakes the loop when a reply is sent from another thread. Shared with the replies, so that a
// reply sent after the server stopped finds a live (if unheard) object.
struct reply_waker {
  int fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  std::mutex mutex;
  std::vector<uint64_t> ready;  // connections whose reply was sent

  ~reply_waker() {
    if (fd >= 0)
      ::close(fd);
  }
  void post(uint64_t id) {
    {
      std::lock_guard<std::mutex> lock(mutex);
      ready.push_back(id);
    }
    poke();
  }
  void poke() {
    const uint64_t one = 1;
    [[maybe_unused]] auto written = ::write(fd, &one, sizeof one);
  }
  std::vector<uint64_t> take() {
    uint64_t counter = 0;
    [[maybe_unused]] auto got = ::read(fd, &counter, sizeof counter);
    std::lock_guard<std::mutex> lock(mutex);
    return std::exchange(ready, {});
  }
};

struct http_server::loop {
  struct connection {
    int fd = -1;
    tls_session tls;  // null: plain HTTP
    // What the TLS session waits for before it can go on (its handshake or a record), else 0.
    short tls_wants = 0;
    std::string client;
    std::string in;
    std::string out;
    size_t sent = 0;
    enum class phase { reading, awaiting, writing } stage = phase::reading;
    clock_type::time_point deadline;
    std::shared_ptr<http_reply::shared> reply;
  };

  const http_server_options& options;
  const std::map<std::pair<std::string, std::string>, http_handler>& routes;
  int listener = -1;
  std::shared_ptr<reply_waker> waker = std::make_shared<reply_waker>();
  uint16_t port = 0;
  std::atomic<bool> stopping{false};
  std::thread thread;
  std::map<uint64_t, connection> connections;
  uint64_t next_id = 0;

  loop(const http_server_options& o,
       const std::map<std::pair<std::string, std::string>, http_handler>& r)
    : options(o), routes(r) {}

  ~loop() {
    if (listener >= 0)
      ::close(listener);
  }

  void close_connection(uint64_t id) {
    auto it = connections.find(id);
    if (it == connections.end())
      return;
    if (it->second.reply)
      it->second.reply->cancel();  // does nothing when the answer was sent
    // A TLS client learns that the answer is complete, not cut (best effort, no waiting).
    if (it->second.tls && it->second.stage == connection::phase::writing &&
        it->second.sent == it->second.out.size())
      tls_close_notify(it->second.tls.get());
    ::close(it->second.fd);
    connections.erase(it);
  }

  void start_writing(connection& c, const http_response& response) {
    c.out = serialize(response);
    c.sent = 0;
    c.stage = connection::phase::writing;
    c.deadline = clock_type::now() + options.write_timeout;
  }

  // Sends what the socket takes; true when the connection is finished (written or broken).
  bool write_some(connection& c) {
    while (c.sent < c.out.size()) {
      const ssize_t n = transmit(c, c.out.data() + c.sent, c.out.size() - c.sent);
      if (n < 0)
        return !(errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR);
      c.sent += static_cast<size_t>(n);
    }
    return true;
  }

  // recv() and send() with their errno conventions, through the TLS session where there is one
  // (EAGAIN while it waits for the socket: tls_wants says for what).
  ssize_t receive(connection& c, char* buffer, size_t size) {
    if (!c.tls)
      return ::recv(c.fd, buffer, size, 0);
    return tls_result(c, tls_read(c.tls.get(), buffer, size));
  }
  ssize_t transmit(connection& c, const char* data, size_t size) {
    if (!c.tls)
      return ::send(c.fd, data, size, MSG_NOSIGNAL);
    return tls_result(c, tls_write(c.tls.get(), data, size));
  }
  static ssize_t tls_result(connection& c, tls_io io) {
    c.tls_wants = 0;
    switch (io.what) {
      case tls_io::outcome::moved: return static_cast<ssize_t>(io.bytes);
      case tls_io::outcome::want_read: c.tls_wants = POLLIN; errno = EAGAIN; return -1;
      case tls_io::outcome::want_write: c.tls_wants = POLLOUT; errno = EAGAIN; return -1;
      case tls_io::outcome::closed: return 0;
      case tls_io::outcome::failed: errno = ECONNRESET; return -1;
    }
    return -1;
  }

  void dispatch(uint64_t id, connection& c, http_request request) {
    auto route = routes.find({request.method, request.path});
    if (route == routes.end()) {
      const bool other_method = std::any_of(routes.begin(), routes.end(), [&](const auto& r) {
        return r.first.second == request.path;
      });
      start_writing(c, other_method ? http_error(405, request.method + " is not served here")
                                    : http_error(404, "no such path: " + request.path));
      return;
    }
    c.stage = connection::phase::awaiting;
    c.reply = std::make_shared<http_reply::shared>();
    c.reply->wake = [waker = waker, id] { waker->post(id); };
    request.client = c.client;
    try {
      route->second(request, http_reply(c.reply));
    } catch (const std::exception& e) {
      http_reply(c.reply).send(http_error(500, e.what()));
    } catch (...) {
      http_reply(c.reply).send(http_error(500, "the handler failed"));
    }
  }

  void accept_all() {
    for (;;) {
      sockaddr_storage address{};
      socklen_t length = sizeof address;
      const int fd = ::accept4(listener, reinterpret_cast<sockaddr*>(&address), &length,
                               SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0)
        return;  // EAGAIN, or an error of that one client
      const std::string client = address_of(address);
      const size_t from_client = static_cast<size_t>(
        std::count_if(connections.begin(), connections.end(),
                      [&](const auto& entry) { return entry.second.client == client; }));
      if (connections.size() >= options.max_connections ||
          from_client >= options.max_connections_per_client) {
        // Best effort: one non-blocking write, then the slot is free again (a TLS client
        // would read the plain answer as garbage: it only sees the connection close).
        auto refusal = http_error(503, "too many connections; try again shortly");
        refusal.headers.emplace_back("Retry-After", "1");
        const auto text = serialize(refusal);
        if (!options.tls) {
          [[maybe_unused]] auto n = ::send(fd, text.data(), text.size(), MSG_NOSIGNAL);
        }
        ::close(fd);
        continue;
      }
      connection c;
      c.fd = fd;
      if (options.tls) {
        try {
          c.tls = options.tls->open(fd);
        } catch (const tls_error&) {
          ::close(fd);
          continue;
        }
      }
      c.client = client;
      c.deadline = clock_type::now() + options.request_timeout;
      connections.emplace(next_id++, std::move(c));
    }
  }

  void read_request(uint64_t id, connection& c) {
    char buffer[16 * 1024];
    for (;;) {
      const ssize_t n = receive(c, buffer, sizeof buffer);
      if (n == 0) {
        close_connection(id);
        return;
      }
      if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
          break;
        close_connection(id);
        return;
      }
      c.in.append(buffer, static_cast<size_t>(n));
      if (c.in.size() > options.max_head_bytes + options.max_body_bytes + 4)
        break;
    }
    auto parsed = parse_request(c.in, options);
    if (parsed.what == parse_outcome::kind::refused)
      start_writing(c, parsed.refusal);
    else if (parsed.what == parse_outcome::kind::complete)
      dispatch(id, c, std::move(parsed.request));
  }

  // While a handler works, the client may hang up: then its work is cancelled.
  void watch_awaiting(uint64_t id, connection& c) {
    char buffer[4096];
    for (;;) {
      const ssize_t n = receive(c, buffer, sizeof buffer);
      if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
        close_connection(id);
        return;
      }
      if (n < 0)
        return;
      // Bytes after the request (a pipelined one) are not served: Connection: close.
    }
  }

  void take_ready() {
    for (auto id : waker->take()) {
      auto it = connections.find(id);
      if (it == connections.end() || it->second.stage != connection::phase::awaiting)
        continue;
      auto& c = it->second;
      std::optional<http_response> response;
      {
        std::lock_guard<std::mutex> lock(c.reply->mutex);
        response = std::move(c.reply->response);
      }
      if (!response)
        continue;
      start_writing(c, *response);
      if (write_some(c))
        close_connection(id);
    }
  }

  void run() {
    // OpenSSL writes with write(), not send(MSG_NOSIGNAL): a TLS client that hung up must cost
    // its connection (EPIPE), not the process (SIGPIPE), so this thread never takes SIGPIPE.
    sigset_t pipe_signal;
    sigemptyset(&pipe_signal);
    sigaddset(&pipe_signal, SIGPIPE);
    ::pthread_sigmask(SIG_BLOCK, &pipe_signal, nullptr);
    std::vector<pollfd> fds;
    std::vector<uint64_t> ids;
    while (!stopping.load()) {
      const auto now = clock_type::now();
      auto wait = idle_wakeup;
      fds.assign({{waker->fd, POLLIN, 0}, {listener, POLLIN, 0}});
      ids.assign({0, 0});
      for (auto& [id, c] : connections) {
        short events = c.stage == connection::phase::writing ? POLLOUT : POLLIN;
        if (c.tls_wants != 0)
          events = c.tls_wants;
        fds.push_back({c.fd, static_cast<short>(events | POLLRDHUP), 0});
        ids.push_back(id);
        if (c.stage != connection::phase::awaiting)
          wait = std::min(wait, std::chrono::ceil<std::chrono::milliseconds>(
                                  std::max(c.deadline - now, clock_type::duration::zero())));
      }
      const int ready_count = ::poll(fds.data(), fds.size(), static_cast<int>(wait.count()));
      if (ready_count < 0 && errno != EINTR)
        break;
      if (fds[0].revents & POLLIN)
        take_ready();
      if (fds[1].revents & POLLIN)
        accept_all();
      for (size_t i = 2; i < fds.size(); ++i) {
        auto it = connections.find(ids[i]);
        if (it == connections.end() || fds[i].revents == 0)
          continue;
        auto& c = it->second;
        switch (c.stage) {
          case connection::phase::reading: read_request(ids[i], c); break;
          case connection::phase::awaiting: watch_awaiting(ids[i], c); break;
          case connection::phase::writing:
            if (write_some(c))
              close_connection(ids[i]);
            break;
        }
      }
      // Deadlines: a request that takes too long to arrive is answered 408; an answer that
      // cannot be written in time is given up.
      const auto after = clock_type::now();
      std::vector<uint64_t> expired;
      for (auto& [id, c] : connections)
        if (c.stage != connection::phase::awaiting && after >= c.deadline)
          expired.push_back(id);
      for (auto id : expired) {
        auto& c = connections.at(id);
        if (c.stage == connection::phase::reading && c.in.size() > 0) {
          start_writing(c, http_error(408, "the request did not arrive within " +
                                             std::to_string(options.request_timeout.count()) +
                                             " ms"));
          if (!write_some(c))
            continue;
        }
        close_connection(id);
      }
    }
    std::vector<uint64_t> all;
    for (const auto& entry : connections)
      all.push_back(entry.first);
    for (auto id : all)
      close_connection(id);
  }
};

http_server::http_server(http_server_options options) : options_(options) {}

http_server::~http_server() { stop(); }

void http_server::handle(const std::string& method, const std::string& path,
                         http_handler handler) {
  if (loop_)
    throw http_server_error("routes are set before the server starts");
  routes_[{method, path}] = std::move(handler);
}

uint16_t http_server::start(const std::string& host, uint16_t port) {
  if (loop_)
    throw http_server_error("the HTTP server is already running on port " +
                            std::to_string(loop_->port));
  auto l = std::make_unique<loop>(options_, routes_);
  const std::string where = host + ":" + std::to_string(port);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  if (int rc = ::getaddrinfo(host.empty() ? nullptr : host.c_str(), std::to_string(port).c_str(),
                             &hints, &found);
      rc != 0)
    throw http_server_error("cannot listen on " + where + ": " + ::gai_strerror(rc));
  std::string why = "no address";
  for (auto* a = found; a != nullptr && l->listener < 0; a = a->ai_next) {
    const int fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) {
      why = std::strerror(errno);
      continue;
    }
    // SO_REUSEADDR only: a port another process listens on stays refused (SO_REUSEPORT would
    // let two servers share it silently).
    int yes = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
    if (::bind(fd, a->ai_addr, a->ai_addrlen) != 0 || ::listen(fd, 128) != 0) {
      why = std::strerror(errno);
      ::close(fd);
      continue;
    }
    set_non_blocking(fd);
    l->listener = fd;
  }
  ::freeaddrinfo(found);
  if (l->listener < 0)
    throw http_server_error("cannot listen on " + where + ": " + why +
                            " (is the port taken by another process, or the host not an address "
                            "of this machine?)");
  sockaddr_storage bound{};
  socklen_t length = sizeof bound;
  ::getsockname(l->listener, reinterpret_cast<sockaddr*>(&bound), &length);
  l->port = ntohs(bound.ss_family == AF_INET6
                    ? reinterpret_cast<const sockaddr_in6&>(bound).sin6_port
                    : reinterpret_cast<const sockaddr_in&>(bound).sin_port);
  if (l->waker->fd < 0)
    throw http_server_error(std::string("cannot create an eventfd: ") + std::strerror(errno));
  auto* raw = l.get();
  l->thread = std::thread([raw] { raw->run(); });
  loop_ = std::move(l);
  return loop_->port;
}

void http_server::stop() {
  if (!loop_)
    return;
  loop_->stopping.store(true);
  loop_->waker->poke();
  if (loop_->thread.joinable())
    loop_->thread.join();
  loop_.reset();
}

uint16_t http_server::port() const { return loop_ ? loop_->port : 0; }

} // namespace ddactor
