// The peer's loopback listener for attaching trainers; see attach_listener.hpp.
#include "runtime/attach_listener.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <map>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <thread>
#include <vector>

namespace ddactor {

namespace {

using clock_type = std::chrono::steady_clock;

struct connection {
  int fd = -1;
  std::string address;
  clock_type::time_point deadline;
  attach_frame_reader frames;
  std::optional<attach_server_handshake> handshake;  // reset once attached
};

std::string address_of(const sockaddr_in& address) {
  char text[INET_ADDRSTRLEN] = {};
  ::inet_ntop(AF_INET, &address.sin_addr, text, sizeof text);
  return std::string(text) + ":" + std::to_string(ntohs(address.sin_port));
}

bool send_all_now(int fd, std::span<const uint8_t> bytes) {
  // Never blocks: a connection that cannot take a few hundred bytes at once is not reading.
  const auto sent = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
  return sent == static_cast<ssize_t>(bytes.size());
}

} // namespace

struct attach_listener::impl {
  attach_listener_options options;
  int listen_fd = -1;
  int wake_pipe[2] = {-1, -1};
  uint16_t port = 0;
  std::atomic<bool> stopping{false};
  std::mutex mutex;  // guards connections (the thread reads and refuses; others send and close)
  std::map<uint64_t, connection> connections;
  uint64_t next_id = 1;
  std::thread thread;

  void run();
  void accept_one();
  // Reads what came; false when the connection is to be closed.
  bool read_from(uint64_t id, connection& c);
  void refuse(connection& c, attach_refusal reason) {
    if (options.on_refused)
      options.on_refused(reason, c.address);
  }
  size_t handshakes() const {
    size_t count = 0;
    for (const auto& [id, c] : connections)
      count += c.handshake ? 1 : 0;
    return count;
  }
};

attach_listener::attach_listener(attach_listener_options options, uint16_t port)
  : impl_(std::make_unique<impl>()) {
  impl_->options = std::move(options);
  impl_->listen_fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);  // this machine's processes only
  socklen_t size = sizeof address;
  if (impl_->listen_fd < 0 ||
      ::bind(impl_->listen_fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
      ::listen(impl_->listen_fd, 16) != 0 ||
      ::getsockname(impl_->listen_fd, reinterpret_cast<sockaddr*>(&address), &size) != 0 ||
      ::pipe2(impl_->wake_pipe, O_CLOEXEC | O_NONBLOCK) != 0) {
    const std::string why = std::strerror(errno);
    if (impl_->listen_fd >= 0)
      ::close(impl_->listen_fd);
    throw std::runtime_error("cannot listen for trainers on 127.0.0.1:" + std::to_string(port) +
                             ": " + why);
  }
  impl_->port = ntohs(address.sin_port);
  impl_->thread = std::thread([this] { impl_->run(); });
}

attach_listener::~attach_listener() {
  impl_->stopping = true;
  const char wake = 1;
  [[maybe_unused]] auto written = ::write(impl_->wake_pipe[1], &wake, 1);
  impl_->thread.join();
  for (auto& [id, c] : impl_->connections)
    ::close(c.fd);
  ::close(impl_->listen_fd);
  ::close(impl_->wake_pipe[0]);
  ::close(impl_->wake_pipe[1]);
}

uint16_t attach_listener::port() const {
  return impl_->port;
}

bool attach_listener::send(uint64_t id, std::span<const uint8_t> payload) {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  auto found = impl_->connections.find(id);
  if (found == impl_->connections.end() || found->second.handshake)
    return false;
  if (send_all_now(found->second.fd, attach_frame(payload)))
    return true;
  ::shutdown(found->second.fd, SHUT_RDWR);  // the thread sees it closed and reports it gone
  return false;
}

void attach_listener::close(uint64_t id) {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  if (auto found = impl_->connections.find(id); found != impl_->connections.end())
    ::shutdown(found->second.fd, SHUT_RDWR);
}

void attach_listener::impl::accept_one() {
  sockaddr_in peer{};
  socklen_t size = sizeof peer;
  const int fd =
    ::accept4(listen_fd, reinterpret_cast<sockaddr*>(&peer), &size, SOCK_CLOEXEC | SOCK_NONBLOCK);
  if (fd < 0)
    return;
  connection c;
  c.fd = fd;
  c.address = address_of(peer);
  std::lock_guard<std::mutex> lock(mutex);
  if (handshakes() >= options.max_handshakes) {
    refuse(c, attach_refusal::busy);
    ::close(fd);
    return;
  }
  c.deadline = clock_type::now() + options.handshake_timeout;
  c.handshake.emplace(options.key, random_attach_nonce());
  connections.emplace(next_id++, std::move(c));
}

bool attach_listener::impl::read_from(uint64_t id, connection& c) {
  uint8_t buffer[512];
  const auto got = ::recv(c.fd, buffer, sizeof buffer, 0);
  if (got == 0 || (got < 0 && errno != EAGAIN && errno != EINTR)) {
    if (c.handshake)
      refuse(c, attach_refusal::closed);
    return false;
  }
  if (got < 0)
    return true;
  if (!c.handshake)
    return false;  // an attached trainer sends nothing: anything is a protocol error
  c.frames.append({buffer, static_cast<size_t>(got)});
  std::vector<uint8_t> payload;
  for (;;) {
    const auto status = c.frames.next(payload);
    if (status == attach_frame_reader::status::incomplete)
      return true;
    if (status == attach_frame_reader::status::oversized) {
      refuse(c, attach_refusal::oversized);
      return false;
    }
    auto reply = c.handshake->on_payload(payload);
    const auto state = c.handshake->current();
    if (state == attach_server_handshake::state::refused) {
      refuse(c, c.handshake->refusal());
      return false;
    }
    if (!reply.empty() && !send_all_now(c.fd, attach_frame(reply)))
      return false;
    if (state == attach_server_handshake::state::accepted) {
      const auto client = c.handshake->client();
      c.handshake.reset();
      if (options.on_attached)
        options.on_attached(id, client);
      return true;  // bytes after the proof would be a protocol error: read them next time
    }
  }
}

void attach_listener::impl::run() {
  while (!stopping) {
    std::vector<pollfd> polled{{listen_fd, POLLIN, 0}, {wake_pipe[0], POLLIN, 0}};
    std::vector<uint64_t> ids;
    {
      std::lock_guard<std::mutex> lock(mutex);
      for (auto& [id, c] : connections) {
        polled.push_back({c.fd, POLLIN, 0});
        ids.push_back(id);
      }
    }
    // Wakes at least every 200 ms to enforce handshake deadlines.
    if (::poll(polled.data(), polled.size(), 200) < 0 && errno != EINTR)
      break;
    if (polled[0].revents & POLLIN)
      accept_one();
    const auto now = clock_type::now();
    for (size_t i = 0; i < ids.size(); ++i) {
      std::unique_lock<std::mutex> lock(mutex);
      auto& c = connections.at(ids[i]);
      bool keep = true;
      if (polled[i + 2].revents != 0) {
        // The callbacks (on_attached, on_refused) only send messages: safe under the lock.
        keep = read_from(ids[i], c);
      } else if (c.handshake && now >= c.deadline) {
        refuse(c, attach_refusal::timeout);
        keep = false;
      }
      if (keep)
        continue;
      const bool was_attached = !c.handshake;
      ::close(c.fd);
      connections.erase(ids[i]);
      lock.unlock();
      if (was_attached && options.on_gone)
        options.on_gone(ids[i]);
    }
  }
}

} // namespace ddactor
