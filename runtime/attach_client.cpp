// The trainer's end of an attach connection; see attach_client.hpp.
#include "runtime/attach_client.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace ddactor {

namespace {

using clock_type = std::chrono::steady_clock;

// Waits until `fd` is readable, for at most until `deadline` (no deadline: for ever).
bool wait_readable(int fd, std::optional<clock_type::time_point> deadline) {
  for (;;) {
    int wait_ms = -1;
    if (deadline) {
      const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(*deadline - clock_type::now());
      if (left.count() <= 0)
        return false;
      wait_ms = static_cast<int>(left.count());
    }
    pollfd polled{fd, POLLIN, 0};
    const int ready = ::poll(&polled, 1, wait_ms);
    if (ready > 0)
      return true;
    if (ready < 0 && errno != EINTR)
      return false;
  }
}

} // namespace

attach_connection::attach_connection(const std::string& host, uint16_t port,
                                     const attach_key& key, attach_client_info info,
                                     std::chrono::milliseconds timeout) {
  const auto deadline = clock_type::now() + timeout;
  const auto where = host + ":" + std::to_string(port);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  if (::inet_pton(AF_INET, host.c_str(), &address.sin_addr) != 1)
    throw attach_error("not an IPv4 address: " + host);
  fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd_ < 0 || ::connect(fd_, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
    const std::string why = std::strerror(errno);
    if (fd_ >= 0)
      ::close(fd_);
    throw attach_error("cannot connect to the peer at " + where + ": " + why +
                       " (is it running with run.attach = true?)");
  }
  attach_client_handshake handshake(key, random_attach_nonce(), std::move(info));
  auto fail = [&](const std::string& why) {
    ::close(fd_);
    fd_ = -1;
    throw attach_error(why);
  };
  auto send_frame = [&](std::span<const uint8_t> payload) {
    const auto frame = attach_frame(payload);
    if (::send(fd_, frame.data(), frame.size(), MSG_NOSIGNAL) !=
        static_cast<ssize_t>(frame.size()))
      fail("the peer at " + where + " closed the connection");
  };
  send_frame(handshake.hello());
  std::vector<uint8_t> payload;
  while (handshake.current() != attach_client_handshake::state::accepted) {
    const auto status = frames_.next(payload);
    if (status == attach_frame_reader::status::incomplete) {
      if (!wait_readable(fd_, deadline))
        fail("the peer at " + where + " did not answer the handshake in time");
      uint8_t buffer[512];
      const auto got = ::recv(fd_, buffer, sizeof buffer, 0);
      if (got <= 0)
        fail("the peer at " + where + " closed the connection during the handshake: it "
             "refused this trainer (does the attach key match the peer's?)");
      frames_.append({buffer, static_cast<size_t>(got)});
      continue;
    }
    const auto reply = status == attach_frame_reader::status::frame
                         ? handshake.on_payload(payload)
                         : std::vector<uint8_t>{};
    if (handshake.current() == attach_client_handshake::state::refused)
      fail("the process at " + where + " does not hold this run's attach key: not the peer "
           "of this run");
    if (!reply.empty())
      send_frame(reply);
  }
}

attach_connection::~attach_connection() {
  if (fd_ >= 0)
    ::close(fd_);
}

void attach_connection::close() {
  ::shutdown(fd_, SHUT_RDWR);
}

std::optional<std::vector<uint8_t>> attach_connection::next() {
  std::vector<uint8_t> payload;
  for (;;) {
    const auto status = frames_.next(payload);
    if (status == attach_frame_reader::status::frame)
      return payload;
    if (status == attach_frame_reader::status::oversized)
      return std::nullopt;
    if (!wait_readable(fd_, std::nullopt))
      return std::nullopt;
    uint8_t buffer[512];
    const auto got = ::recv(fd_, buffer, sizeof buffer, 0);
    if (got <= 0)
      return std::nullopt;
    frames_.append({buffer, static_cast<size_t>(got)});
  }
}

} // namespace ddactor
