#pragma once
// For the gateway tests: plain sockets (a client, an echo server standing in for CAF, blocking
// reads with timeouts), swarm keys, and the count of refused links by reason.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <thread>
#include <string>
#include <string_view>
#include <vector>

#include "monitoring/ddactor_metrics.hpp"
#include "runtime/secure/handshake.hpp"

namespace ddactor {

using namespace std::chrono_literals;

inline int connect_to(uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// Reads exactly n bytes (or fewer when the peer closes or `timeout` passes).
inline std::vector<uint8_t> read_bytes(int fd, size_t n, std::chrono::milliseconds timeout = 5s) {
  std::vector<uint8_t> out;
  auto until = std::chrono::steady_clock::now() + timeout;
  while (out.size() < n && std::chrono::steady_clock::now() < until) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 50) <= 0)
      continue;
    uint8_t buffer[65536];
    auto got = ::recv(fd, buffer, std::min(sizeof buffer, n - out.size()), 0);
    if (got <= 0)
      break;
    out.insert(out.end(), buffer, buffer + got);
  }
  return out;
}

// Whether the other side closed `fd` within `timeout`.
inline bool closed_within(int fd, std::chrono::milliseconds timeout) {
  auto until = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < until) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 50) <= 0)
      continue;
    uint8_t buffer[4096];
    auto got = ::recv(fd, buffer, sizeof buffer, 0);
    if (got <= 0)
      return true;
  }
  return false;
}

inline void send_all(int fd, const std::vector<uint8_t>& bytes) {
  size_t sent = 0;
  while (sent < bytes.size()) {
    auto n = ::send(fd, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
    if (n <= 0)
      return;
    sent += static_cast<size_t>(n);
  }
}

// A listening socket on 127.0.0.1 at a free port (written to `port`).
inline int listen_on_loopback(uint16_t& port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  ::listen(fd, 16);
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  port = ntohs(addr.sin_port);
  return fd;
}

// A loopback server that echoes every connection's bytes back (CAF's place in these tests).
class echo_server {
 public:
  echo_server() {
    fd_ = listen_on_loopback(port_);
    thread_ = std::thread([this] {
      while (!stop_) {
        pollfd p{fd_, POLLIN, 0};
        if (::poll(&p, 1, 50) <= 0)
          continue;
        int client = ::accept(fd_, nullptr, nullptr);
        if (client < 0)
          continue;
        ++accepted_;
        workers_.emplace_back([this, client] {
          uint8_t buffer[65536];
          while (!stop_) {
            pollfd q{client, POLLIN, 0};
            if (::poll(&q, 1, 50) <= 0)
              continue;
            auto n = ::recv(client, buffer, sizeof buffer, 0);
            if (n <= 0)
              break;
            send_all(client, std::vector<uint8_t>(buffer, buffer + n));
          }
          ::close(client);
        });
      }
    });
  }
  ~echo_server() {
    stop_ = true;
    thread_.join();
    for (auto& w : workers_)
      w.join();
    ::close(fd_);
  }
  uint16_t port() const { return port_; }
  int accepted() const { return accepted_; }

 private:
  int fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> accepted_{0};
  std::thread thread_;
  std::vector<std::thread> workers_;
};

// Sends `bytes` patterned bytes through fd (from another thread) and returns what comes back
// (an echo's whole reply, if it works), with the message sent in `sent`.
inline std::vector<uint8_t> echo_through(int fd, size_t bytes, uint8_t step,
                                         std::vector<uint8_t>& sent) {
  sent.resize(bytes);
  for (size_t i = 0; i < bytes; ++i)
    sent[i] = static_cast<uint8_t>(i * step + 1);
  std::thread writer([&] { send_all(fd, sent); });
  auto echoed = read_bytes(fd, bytes, 20s);
  writer.join();
  return echoed;
}

inline symmetric_key swarm_key(uint8_t fill) {
  symmetric_key k{};
  k.fill(fill);
  return k;
}

// Links refused for `reason` so far (ddactor_auth_failures_total).
inline double failures(std::string_view reason) {
  return link_metrics(global_metrics()).auth_failures.with({std::string(reason)}).value();
}

} // namespace ddactor
