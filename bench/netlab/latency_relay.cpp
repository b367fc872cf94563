// The delaying TCP relay: one epoll loop, timestamped chunks per direction, a heap of due times
// driving one timerfd. See latency_relay.hpp for the delay model and the state diagram.
#include "bench/netlab/latency_relay.hpp"

#include <fcntl.h>
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <ctime>

namespace ddactor {
namespace {

constexpr uint64_t listen_token = 1;
constexpr uint64_t stop_token = 2;
constexpr uint64_t timer_token = 3;
// One read takes at most this much; chunks hold exactly what was read.
constexpr std::size_t read_size = 64 * 1024;
constexpr int max_events = 256;

std::string errno_text(const char* what) {
  return std::string(what) + ": " + std::strerror(errno);
}

sockaddr_storage resolve(const host_port& address, bool passive, socklen_t& length) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0);
  const std::string service = std::to_string(address.port);
  const char* host = address.host.empty() || address.host == "*" ? nullptr : address.host.c_str();
  addrinfo* found = nullptr;
  if (int rc = ::getaddrinfo(host, service.c_str(), &hints, &found); rc != 0)
    throw latency_relay_error("cannot resolve '" + address.host + "': " + ::gai_strerror(rc));
  sockaddr_storage result{};
  std::memcpy(&result, found->ai_addr, found->ai_addrlen);
  length = found->ai_addrlen;
  ::freeaddrinfo(found);
  return result;
}

void set_no_delay(int fd) {
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

// Closing with a zero linger time sends RST: how a relay passes on an abort.
void close_with_reset(int fd) {
  linger hard{1, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &hard, sizeof hard);
  ::close(fd);
}

void update_peak(std::atomic<std::size_t>& peak, std::size_t value) {
  std::size_t seen = peak.load(std::memory_order_relaxed);
  while (value > seen && !peak.compare_exchange_weak(seen, value, std::memory_order_relaxed)) {
  }
}

}  // namespace

host_port parse_host_port(std::string_view text) {
  const auto bad = [&](const char* why) {
    return latency_relay_error("bad address '" + std::string(text) + "': " + why +
                               " (expected HOST:PORT or [IPV6]:PORT)");
  };
  host_port result;
  std::string_view port_text;
  if (!text.empty() && text.front() == '[') {
    const auto close = text.find(']');
    if (close == std::string_view::npos)
      throw bad("missing ']'");
    if (close + 1 >= text.size() || text[close + 1] != ':')
      throw bad("missing ':' after ']'");
    result.host = std::string(text.substr(1, close - 1));
    port_text = text.substr(close + 2);
  } else {
    const auto colon = text.rfind(':');
    if (colon == std::string_view::npos)
      throw bad("missing ':'");
    result.host = std::string(text.substr(0, colon));
    if (result.host.find(':') != std::string::npos)
      throw bad("an IPv6 host needs brackets");
    port_text = text.substr(colon + 1);
  }
  if (result.host.empty())
    throw bad("empty host");
  unsigned port = 0;
  const char* last = port_text.data() + port_text.size();
  const auto [end, ec] = std::from_chars(port_text.data(), last, port);
  if (port_text.empty() || ec != std::errc() || end != last || port > 65535)
    throw bad("port must be a number from 0 to 65535");
  result.port = static_cast<uint16_t>(port);
  return result;
}

source_delay parse_source_delay(std::string_view text) {
  const auto equals = text.rfind('=');
  const auto bad = [&](const char* why) {
    return latency_relay_error("bad source delay '" + std::string(text) + "': " + why +
                               " (expected ADDRESS=MS)");
  };
  if (equals == std::string_view::npos || equals == 0)
    throw bad("missing 'ADDRESS='");
  const std::string ms_text(text.substr(equals + 1));
  std::size_t used = 0;
  double ms = -1;
  try {
    ms = std::stod(ms_text, &used);
  } catch (const std::logic_error&) {
    throw bad("not a number of milliseconds");
  }
  if (used != ms_text.size() || !(ms >= 0.0) || ms > 3.6e6)
    throw bad("milliseconds must be from 0 to 3600000");
  in6_addr ignored{};
  source_delay result{std::string(text.substr(0, equals)),
                      std::chrono::microseconds(static_cast<int64_t>(ms * 1000.0 + 0.5))};
  if (::inet_pton(AF_INET, result.address.c_str(), &ignored) != 1 &&
      ::inet_pton(AF_INET6, result.address.c_str(), &ignored) != 1)
    throw bad("not a numeric IPv4 or IPv6 address");
  return result;
}

latency_relay::latency_relay(latency_relay_options options)
  : options_(std::move(options)),
    // Many tiny reads would otherwise hold far more memory in chunk overhead than in bytes.
    max_chunks_(std::max<std::size_t>(64, options_.max_buffered_bytes / 512)),
    jitter_random_(options_.seed),
    read_buffer_(read_size) {
  if (options_.delay.count() < 0 || options_.jitter.count() < 0)
    throw latency_relay_error("the delay and the jitter must not be negative");
  for (const auto& source : options_.source_delays)
    if (source.extra.count() < 0)
      throw latency_relay_error("the extra delay of " + source.address + " is negative");
  if (options_.max_buffered_bytes < 1)
    throw latency_relay_error("max_buffered_bytes must be positive");
  target_address_ = resolve(options_.target, false, target_address_length_);
  socklen_t listen_length = 0;
  sockaddr_storage listen_address = resolve(options_.listen, true, listen_length);

  const auto fail = [this](const std::string& what) {
    const std::string message = errno_text(what.c_str());
    for (int fd : {listen_fd_, epoll_fd_, stop_fd_, timer_fd_})
      if (fd >= 0)
        ::close(fd);
    return latency_relay_error(message);
  };
  listen_fd_ = ::socket(listen_address.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (listen_fd_ < 0)
    throw fail("socket");
  int one = 1;
  ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  const std::string listen_text = options_.listen.host + ":" + std::to_string(options_.listen.port);
  if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&listen_address), listen_length) != 0)
    throw fail("cannot listen on " + listen_text + ": bind");
  if (::listen(listen_fd_, SOMAXCONN) != 0)
    throw fail("cannot listen on " + listen_text + ": listen");
  sockaddr_storage bound{};
  socklen_t bound_length = sizeof bound;
  ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&bound), &bound_length);
  listen_port_ = ntohs(bound.ss_family == AF_INET6
                         ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                         : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);

  epoll_fd_ = ::epoll_create1(EPOLL_CLOEXEC);
  if (epoll_fd_ < 0)
    throw fail("epoll_create1");
  stop_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (stop_fd_ < 0)
    throw fail("eventfd");
  timer_fd_ = ::timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  if (timer_fd_ < 0)
    throw fail("timerfd_create");
  for (auto [fd, token] : {std::pair{listen_fd_, listen_token}, std::pair{stop_fd_, stop_token},
                           std::pair{timer_fd_, timer_token}}) {
    epoll_event event{};
    event.events = EPOLLIN;
    event.data.u64 = token;
    if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &event) != 0)
      throw fail("epoll_ctl");
  }
}

latency_relay::~latency_relay() {
  for (auto& [id, c] : connections_)
    for (int fd : c->fds)
      if (fd >= 0)
        ::close(fd);
  for (int fd : {listen_fd_, epoll_fd_, stop_fd_, timer_fd_})
    if (fd >= 0)
      ::close(fd);
}

void latency_relay::stop() {
  const uint64_t one = 1;
  // Async-signal-safe: a write to an eventfd.
  [[maybe_unused]] auto written = ::write(stop_fd_, &one, sizeof one);
}

latency_relay_stats latency_relay::stats() const {
  latency_relay_stats s;
  s.connections_accepted = connections_accepted_.load(std::memory_order_relaxed);
  s.connections_closed = connections_closed_.load(std::memory_order_relaxed);
  s.connections_aborted = connections_aborted_.load(std::memory_order_relaxed);
  s.target_connect_failures = target_connect_failures_.load(std::memory_order_relaxed);
  s.bytes_to_target = bytes_to_target_.load(std::memory_order_relaxed);
  s.bytes_to_client = bytes_to_client_.load(std::memory_order_relaxed);
  s.peak_buffered_bytes = peak_buffered_bytes_.load(std::memory_order_relaxed);
  return s;
}

void latency_relay::run() {
  epoll_event events[max_events];
  bool stopping = false;
  while (!stopping) {
    arm_timer();
    const int n = ::epoll_wait(epoll_fd_, events, max_events, -1);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      throw latency_relay_error(errno_text("epoll_wait"));
    }
    for (int k = 0; k < n; ++k) {
      const uint64_t token = events[k].data.u64;
      if (token == stop_token) {
        stopping = true;
      } else if (token == listen_token) {
        accept_connections();
      } else if (token == timer_token) {
        uint64_t expirations = 0;
        [[maybe_unused]] auto r = ::read(timer_fd_, &expirations, sizeof expirations);
      } else {
        on_socket_event(token / 2, static_cast<int>(token % 2), events[k].events);
      }
    }
    run_due_timers();
  }
  // Stopping is not a clean close of each connection: no counts, no delayed FINs.
  for (auto& [id, c] : connections_)
    for (int fd : c->fds)
      ::close(fd);
  connections_.clear();
  timers_ = {};
}

void latency_relay::arm_timer() {
  const auto due = timers_.empty() ? relay_clock::time_point{} : timers_.top().due;
  if (due == armed_for_)
    return;
  armed_for_ = due;
  itimerspec spec{};  // all zero disarms
  if (!timers_.empty()) {
    // steady_clock is CLOCK_MONOTONIC on Linux, so its epoch is the timerfd's.
    const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(due.time_since_epoch());
    spec.it_value.tv_sec = static_cast<time_t>(ns.count() / 1000000000);
    spec.it_value.tv_nsec = static_cast<long>(ns.count() % 1000000000);
    if (spec.it_value.tv_sec == 0 && spec.it_value.tv_nsec == 0)
      spec.it_value.tv_nsec = 1;
  }
  if (::timerfd_settime(timer_fd_, TFD_TIMER_ABSTIME, &spec, nullptr) != 0)
    throw latency_relay_error(errno_text("timerfd_settime"));
}

void latency_relay::run_due_timers() {
  const auto now = relay_clock::now();
  while (!timers_.empty() && timers_.top().due <= now) {
    const timer_entry entry = timers_.top();
    timers_.pop();
    // Entries of closed connections, or of chunks an EPOLLOUT already flushed, are no-ops.
    auto it = connections_.find(entry.connection_id);
    if (it == connections_.end())
      continue;
    connection& c = *it->second;
    flush_sink(c, entry.direction);
    if (connections_.count(entry.connection_id)) {
      update_interest(c);
      finish_if_done(c);
    }
  }
}

std::chrono::microseconds latency_relay::delay_for(int client_fd) const {
  if (options_.source_delays.empty())
    return options_.delay;
  sockaddr_storage peer{};
  socklen_t length = sizeof peer;
  if (::getpeername(client_fd, reinterpret_cast<sockaddr*>(&peer), &length) != 0)
    return options_.delay;
  char text[INET6_ADDRSTRLEN] = {};
  const void* raw = peer.ss_family == AF_INET6
                      ? static_cast<const void*>(&reinterpret_cast<sockaddr_in6*>(&peer)->sin6_addr)
                      : static_cast<const void*>(&reinterpret_cast<sockaddr_in*>(&peer)->sin_addr);
  if (!::inet_ntop(peer.ss_family, raw, text, sizeof text))
    return options_.delay;
  for (const auto& source : options_.source_delays)
    if (source.address == text)
      return options_.delay + source.extra;
  return options_.delay;
}

// When bytes read now may leave: the connection's delay, plus jitter, but never before bytes
// read earlier in the same direction.
latency_relay::relay_clock::time_point latency_relay::next_due(const connection& c,
                                                                direction& dir) {
  auto delay = c.delay;
  if (options_.jitter.count() > 0) {
    std::uniform_int_distribution<int64_t> spread(-options_.jitter.count(),
                                                  options_.jitter.count());
    delay = std::max(std::chrono::microseconds(0),
                     delay + std::chrono::microseconds(spread(jitter_random_)));
  }
  dir.last_due = std::max(dir.last_due, relay_clock::now() + delay);
  return dir.last_due;
}

void latency_relay::set_accepting(bool on) {
  if (accepting_ == on)
    return;
  accepting_ = on;
  epoll_event event{};
  event.events = EPOLLIN;
  event.data.u64 = listen_token;
  ::epoll_ctl(epoll_fd_, on ? EPOLL_CTL_ADD : EPOLL_CTL_DEL, listen_fd_, &event);
}

void latency_relay::accept_connections() {
  while (true) {
    const int client = ::accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (client < 0) {
      if (errno == EINTR || errno == ECONNABORTED)
        continue;
      // Out of descriptors: stop accepting until a connection closes, instead of spinning on a
      // listening socket that stays readable.
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
        set_accepting(false);
      return;
    }
    connections_accepted_.fetch_add(1, std::memory_order_relaxed);
    const int target =
      ::socket(target_address_.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (target < 0) {
      target_connect_failures_.fetch_add(1, std::memory_order_relaxed);
      close_with_reset(client);
      if (errno == EMFILE || errno == ENFILE)
        set_accepting(false);
      return;
    }
    set_no_delay(client);
    set_no_delay(target);
    const int rc =
      ::connect(target, reinterpret_cast<sockaddr*>(&target_address_), target_address_length_);
    if (rc != 0 && errno != EINPROGRESS) {
      target_connect_failures_.fetch_add(1, std::memory_order_relaxed);
      ::close(target);
      close_with_reset(client);
      continue;
    }
    auto c = std::make_unique<connection>();
    c->id = next_connection_id_++;
    c->fds[0] = client;
    c->fds[1] = target;
    c->target_connected = rc == 0;
    c->delay = delay_for(client);
    connection& ref = *c;
    connections_.emplace(ref.id, std::move(c));
    update_interest(ref);
  }
}

void latency_relay::on_socket_event(uint64_t connection_id, int side, uint32_t events) {
  auto it = connections_.find(connection_id);
  if (it == connections_.end())
    return;  // closed earlier in this batch
  connection& c = *it->second;
  const uint32_t trouble = EPOLLERR | EPOLLHUP;
  if (side == 1 && !c.target_connected) {
    if (!(events & (EPOLLOUT | trouble)))
      return;
    int error = 0;
    socklen_t length = sizeof error;
    ::getsockopt(c.fds[1], SOL_SOCKET, SO_ERROR, &error, &length);
    if (error != 0) {
      // The client saw an accepted connection; a reset is the nearest thing to "refused".
      target_connect_failures_.fetch_add(1, std::memory_order_relaxed);
      abort_connection(c);
      return;
    }
    c.target_connected = true;
    flush_sink(c, 0);
  } else {
    if ((events & (EPOLLIN | trouble)) && (c.registered_events[side] & EPOLLIN))
      read_source(c, side);
    if (!connections_.count(connection_id))
      return;
    if ((events & (EPOLLOUT | trouble)) && c.directions[1 - side].sink_blocked)
      flush_sink(c, 1 - side);
  }
  if (!connections_.count(connection_id))
    return;
  update_interest(c);
  finish_if_done(c);
}

bool latency_relay::has_room(const direction& dir) const {
  return dir.buffered < options_.max_buffered_bytes && dir.queue.size() < max_chunks_;
}

void latency_relay::read_source(connection& c, int d) {
  direction& dir = c.directions[d];
  const uint64_t id = c.id;
  while (!dir.source_eof && has_room(dir)) {
    const std::size_t room =
      std::min(read_buffer_.size(), options_.max_buffered_bytes - dir.buffered);
    const ssize_t n = ::recv(c.fds[d], read_buffer_.data(), room, 0);
    if (n > 0) {
      const auto due = next_due(c, dir);
      dir.queue.push_back(
        chunk{due, std::vector<char>(read_buffer_.data(), read_buffer_.data() + n)});
      dir.buffered += static_cast<std::size_t>(n);
      update_peak(peak_buffered_bytes_, dir.buffered);
      timers_.push(timer_entry{due, id, d});
      if (static_cast<std::size_t>(n) < room)
        return;  // drained for now; level-triggered epoll reports more
    } else if (n == 0) {
      dir.source_eof = true;
      dir.fin_due = next_due(c, dir);
      timers_.push(timer_entry{dir.fin_due, id, d});
    } else if (errno == EINTR) {
      continue;
    } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
      return;
    } else {
      abort_connection(c);
      return;
    }
  }
}

void latency_relay::flush_sink(connection& c, int d) {
  direction& dir = c.directions[d];
  if (d == 0 && !c.target_connected)
    return;
  if (dir.sink_shut)
    return;
  const int sink = c.fds[1 - d];
  dir.sink_blocked = false;
  const auto now = relay_clock::now();
  while (!dir.queue.empty() && dir.queue.front().due <= now) {
    chunk& front = dir.queue.front();
    const ssize_t n = ::send(sink, front.bytes.data() + front.written,
                             front.bytes.size() - front.written, MSG_NOSIGNAL);
    if (n > 0) {
      front.written += static_cast<std::size_t>(n);
      dir.buffered -= static_cast<std::size_t>(n);
      (d == 0 ? bytes_to_target_ : bytes_to_client_)
        .fetch_add(static_cast<uint64_t>(n), std::memory_order_relaxed);
      if (front.written == front.bytes.size())
        dir.queue.pop_front();
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      dir.sink_blocked = true;
      return;
    } else {
      abort_connection(c);
      return;
    }
  }
  if (dir.source_eof && dir.queue.empty() && dir.fin_due <= now) {
    ::shutdown(sink, SHUT_WR);
    dir.sink_shut = true;
  }
}

void latency_relay::update_interest(connection& c) {
  for (int side = 0; side < 2; ++side) {
    const direction& from_here = c.directions[side];
    const direction& to_here = c.directions[1 - side];
    const bool connected = side == 0 || c.target_connected;
    uint32_t wanted = 0;
    if (connected && !from_here.source_eof && has_room(from_here))
      wanted |= EPOLLIN;
    if (!connected || to_here.sink_blocked)
      wanted |= EPOLLOUT;
    if (c.registered[side] && wanted == c.registered_events[side])
      continue;
    epoll_event event{};
    event.events = wanted;
    event.data.u64 = c.id * 2 + static_cast<uint64_t>(side);
    // An fd with nothing to wait for leaves the set: epoll would still report its HUP/ERR
    // (level-triggered) and spin the loop until the next timer.
    if (wanted == 0) {
      if (c.registered[side])
        ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, c.fds[side], &event);
      c.registered[side] = false;
    } else {
      ::epoll_ctl(epoll_fd_, c.registered[side] ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, c.fds[side],
                  &event);
      c.registered[side] = true;
    }
    c.registered_events[side] = wanted;
  }
}

void latency_relay::finish_if_done(connection& c) {
  if (c.directions[0].sink_shut && c.directions[1].sink_shut)
    close_connection(c, false);
}

void latency_relay::abort_connection(connection& c) {
  close_connection(c, true);
}

void latency_relay::close_connection(connection& c, bool reset) {
  (reset ? connections_aborted_ : connections_closed_).fetch_add(1, std::memory_order_relaxed);
  for (int fd : c.fds) {
    if (fd < 0)
      continue;
    // close() also drops the fd from the epoll set.
    if (reset)
      close_with_reset(fd);
    else
      ::close(fd);
  }
  connections_.erase(c.id);  // destroys c
  set_accepting(true);
}

}  // namespace ddactor
