// Tests of the network lab's parts. The relay tests run it on loopback inside this process
// (no root, no namespaces): bytes arrive intact and in order for concurrent connections and
// 100 MB transfers, half-closes and refusals behave, buffering stays bounded, and no byte (nor
// the end of stream) arrives before the delay (a lower bound, so not a flaky timing assertion).
// The lab tests need root and skip elsewhere.
#include "bench/netlab/latency_relay.hpp"
#include "bench/netlab/netlab.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstring>
#include <fstream>
#include <iterator>
#include <set>
#include <thread>

namespace ddactor {
namespace {

using namespace std::chrono_literals;
using test_clock = std::chrono::steady_clock;

// --- loopback sockets ----------------------------------------------------------------------

sockaddr_in loopback(uint16_t port, const char* host = "127.0.0.1") {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  ::inet_pton(AF_INET, host, &a.sin_addr);
  return a;
}

struct listening_socket {
  int fd = -1;
  uint16_t port = 0;
  explicit listening_socket(const char* host = "127.0.0.1") {
    fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    auto a = loopback(0, host);
    if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(fd, 128) != 0)
      throw std::runtime_error(std::string("listen: ") + std::strerror(errno));
    socklen_t length = sizeof a;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &length);
    port = ntohs(a.sin_port);
  }
  ~listening_socket() { ::close(fd); }
  // A failed accept (the test is already failing) must not hang it.
  int accept_one() const {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 30000) != 1)
      return -1;
    return ::accept(fd, nullptr, nullptr);
  }
};

int connect_to(uint16_t port, const char* host = "127.0.0.1") {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  auto a = loopback(port, host);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    throw std::runtime_error(std::string("connect: ") + std::strerror(errno));
  }
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  // A relay bug shows as a failed read after 30 s, not as a hung test.
  timeval limit{30, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &limit, sizeof limit);
  return fd;
}

// The IPv4 address the other end of a connected socket has.
std::string peer_address_of(int fd) {
  sockaddr_in peer{};
  socklen_t length = sizeof peer;
  ::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &length);
  char text[INET_ADDRSTRLEN] = "?";
  ::inet_ntop(AF_INET, &peer.sin_addr, text, sizeof text);
  return text;
}

void with_timeouts(int fd) {
  timeval limit{30, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &limit, sizeof limit);
}

bool send_all(int fd, const char* data, std::size_t size) {
  while (size > 0) {
    const ssize_t n = ::send(fd, data, size, MSG_NOSIGNAL);
    if (n <= 0)
      return false;
    data += n;
    size -= static_cast<std::size_t>(n);
  }
  return true;
}

// Byte k of stream `seed`: splitmix64 of the 8-byte word index, so that a reordered, repeated
// or dropped chunk anywhere changes the bytes seen at that offset.
uint8_t pattern_byte(uint64_t seed, uint64_t k) {
  uint64_t z = seed * 0x9E3779B97F4A7C15ull + (k >> 3) + 1;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return static_cast<uint8_t>(z >> (8 * (k & 7)));
}

void fill_pattern(uint64_t seed, uint64_t offset, std::vector<char>& block) {
  for (std::size_t i = 0; i < block.size(); ++i)
    block[i] = static_cast<char>(pattern_byte(seed, offset + i));
}

bool send_pattern(int fd, uint64_t seed, uint64_t total) {
  std::vector<char> block(128 * 1024);
  for (uint64_t offset = 0; offset < total; offset += block.size()) {
    block.resize(std::min<uint64_t>(block.size(), total - offset));
    fill_pattern(seed, offset, block);
    if (!send_all(fd, block.data(), block.size()))
      return false;
  }
  return true;
}

struct received {
  uint64_t bytes = 0;
  uint64_t first_mismatch = UINT64_MAX;
  bool clean_eof = false;
};

// Reads to end of stream, comparing against the pattern.
received receive_pattern(int fd, uint64_t seed, uint64_t limit = UINT64_MAX) {
  received r;
  std::vector<char> block(128 * 1024);
  while (r.bytes < limit) {
    const ssize_t n =
      ::recv(fd, block.data(), std::min<uint64_t>(block.size(), limit - r.bytes), 0);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0) {
      r.clean_eof = n == 0;
      return r;
    }
    for (ssize_t i = 0; i < n && r.first_mismatch == UINT64_MAX; ++i)
      if (static_cast<uint8_t>(block[static_cast<std::size_t>(i)]) !=
          pattern_byte(seed, r.bytes + static_cast<uint64_t>(i)))
        r.first_mismatch = r.bytes + static_cast<uint64_t>(i);
    r.bytes += static_cast<uint64_t>(n);
  }
  return r;
}

// A relay on loopback in front of `target_port`, run on its own thread.
class running_relay {
 public:
  running_relay(uint16_t target_port, std::chrono::microseconds delay,
                std::size_t max_buffered_bytes = 4 << 20)
    : relay_(latency_relay_options{{"127.0.0.1", 0}, {"127.0.0.1", target_port}, delay,
                                   max_buffered_bytes}),
      thread_([this] { relay_.run(); }) {}
  ~running_relay() {
    relay_.stop();
    thread_.join();
  }
  uint16_t port() const { return relay_.listen_port(); }
  latency_relay_stats stats() const { return relay_.stats(); }
  void stop_and_join() {
    relay_.stop();
    thread_.join();
    thread_ = std::thread([] {});
  }

 private:
  latency_relay relay_;
  std::thread thread_;
};

// --- parse_host_port --------------------------------------------------------------------------

struct address_case {
  const char* text;
  const char* host;  // nullptr: must be rejected
  uint16_t port;
};

class parse_host_port_test : public ::testing::TestWithParam<address_case> {};

TEST_P(parse_host_port_test, ParsesOrRejects) {
  const auto& c = GetParam();
  if (c.host == nullptr) {
    EXPECT_THROW(parse_host_port(c.text), latency_relay_error) << c.text;
    return;
  }
  const auto parsed = parse_host_port(c.text);
  EXPECT_EQ(parsed.host, c.host);
  EXPECT_EQ(parsed.port, c.port);
}

INSTANTIATE_TEST_SUITE_P(
  latency_relay, parse_host_port_test,
  ::testing::Values(address_case{"127.0.0.1:80", "127.0.0.1", 80},
                    address_case{"10.77.0.3:0", "10.77.0.3", 0},
                    address_case{"localhost:65535", "localhost", 65535},
                    address_case{"[::1]:4000", "::1", 4000}, address_case{"", nullptr, 0},
                    address_case{"1.2.3.4", nullptr, 0}, address_case{":80", nullptr, 0},
                    address_case{"host:", nullptr, 0}, address_case{"host:65536", nullptr, 0},
                    address_case{"host:-1", nullptr, 0}, address_case{"host:8x", nullptr, 0},
                    address_case{"::1:80", nullptr, 0}, address_case{"[::1]80", nullptr, 0},
                    address_case{"[::1:80", nullptr, 0}, address_case{"[]:80", nullptr, 0}));

TEST(latency_relay, RejectsBadOptions) {
  EXPECT_THROW(latency_relay(latency_relay_options{{"127.0.0.1", 0}, {"127.0.0.1", 1}, -1ms}),
               latency_relay_error);
  EXPECT_THROW(latency_relay(latency_relay_options{{"127.0.0.1", 0}, {"127.0.0.1", 1}, 1ms, 0}),
               latency_relay_error);
  // Listening where another socket already listens.
  listening_socket taken;
  EXPECT_THROW(latency_relay(latency_relay_options{{"127.0.0.1", taken.port},
                                                   {"127.0.0.1", 1}, 1ms}),
               latency_relay_error);
}

// --- relay: data integrity ---------------------------------------------------------------------

// Echoes every connection back until the client closes its side.
class echo_server {
 public:
  explicit echo_server(int connections) : thread_([this, connections] { serve(connections); }) {}
  ~echo_server() { thread_.join(); }
  uint16_t port() const { return socket_.port; }

 private:
  void serve(int connections) {
    std::vector<std::thread> handlers;
    for (int k = 0; k < connections; ++k) {
      const int fd = socket_.accept_one();
      if (fd < 0)
        break;
      handlers.emplace_back([fd] {
        with_timeouts(fd);
        std::vector<char> block(64 * 1024);
        ssize_t n;
        while ((n = ::recv(fd, block.data(), block.size(), 0)) > 0)
          if (!send_all(fd, block.data(), static_cast<std::size_t>(n)))
            break;
        ::shutdown(fd, SHUT_WR);
        ::close(fd);
      });
    }
    for (auto& h : handlers)
      h.join();
  }

  listening_socket socket_;
  std::thread thread_;
};

TEST(latency_relay, ConcurrentConnectionsEchoIntactAndInOrder) {
  constexpr int connections = 16;
  constexpr uint64_t bytes = 3'000'000;
  echo_server target(connections);
  running_relay relay(target.port(), 5ms);
  std::vector<received> results(connections);
  std::vector<std::thread> clients;
  for (int k = 0; k < connections; ++k)
    clients.emplace_back([&, k] {
      const int fd = connect_to(relay.port());
      // Reading and writing at once: an echo of 3 MB does not fit in socket buffers.
      std::thread writer([&] {
        send_pattern(fd, 100 + k, bytes);
        ::shutdown(fd, SHUT_WR);
      });
      results[k] = receive_pattern(fd, 100 + k);
      writer.join();
      ::close(fd);
    });
  for (auto& c : clients)
    c.join();
  for (int k = 0; k < connections; ++k) {
    SCOPED_TRACE("connection " + std::to_string(k));
    EXPECT_EQ(results[k].bytes, bytes);
    EXPECT_EQ(results[k].first_mismatch, UINT64_MAX);
    EXPECT_TRUE(results[k].clean_eof);
  }
  const auto s = relay.stats();
  EXPECT_EQ(s.connections_accepted, static_cast<uint64_t>(connections));
  EXPECT_EQ(s.bytes_to_target, connections * bytes);
  EXPECT_EQ(s.bytes_to_client, connections * bytes);
  EXPECT_EQ(s.connections_aborted, 0u);
}

// 100 MB one way through the relay, client->target or target->client.
class relay_bulk_test : public ::testing::TestWithParam<bool> {};

TEST_P(relay_bulk_test, HundredMegabytesArriveIntactAndInOrder) {
  const bool to_target = GetParam();
  constexpr uint64_t bytes = 100'000'000;
  constexpr std::size_t bound = 1 << 20;
  listening_socket target;
  running_relay relay(target.port, 2ms, bound);
  received result;
  std::thread server([&] {
    const int fd = target.accept_one();
    ASSERT_GE(fd, 0);
    with_timeouts(fd);
    if (to_target) {
      // A slow start of the reader fills the relay's queue: its bound must hold.
      std::this_thread::sleep_for(200ms);
      result = receive_pattern(fd, 7);
    } else {
      EXPECT_TRUE(send_pattern(fd, 7, bytes));
    }
    ::close(fd);
  });
  const int fd = connect_to(relay.port());
  if (to_target) {
    EXPECT_TRUE(send_pattern(fd, 7, bytes));
    ::shutdown(fd, SHUT_WR);
  } else {
    std::this_thread::sleep_for(200ms);
    result = receive_pattern(fd, 7);
  }
  server.join();
  ::close(fd);
  EXPECT_EQ(result.bytes, bytes);
  EXPECT_EQ(result.first_mismatch, UINT64_MAX);
  EXPECT_TRUE(result.clean_eof);
  EXPECT_LE(relay.stats().peak_buffered_bytes, bound);
  EXPECT_GT(relay.stats().peak_buffered_bytes, 0u);
}

INSTANTIATE_TEST_SUITE_P(latency_relay, relay_bulk_test, ::testing::Bool(),
                         [](const auto& info) {
                           return std::string(info.param ? "ClientToTarget" : "TargetToClient");
                         });

TEST(latency_relay, HalfCloseKeepsTheOtherDirectionOpen) {
  listening_socket target;
  running_relay relay(target.port, 1ms);
  constexpr uint64_t reply_bytes = 1'000'000;
  received request;
  std::thread server([&] {
    const int fd = target.accept_one();
    ASSERT_GE(fd, 0);
    with_timeouts(fd);
    request = receive_pattern(fd, 1);  // to the client's FIN
    EXPECT_TRUE(send_pattern(fd, 2, reply_bytes));
    ::close(fd);
  });
  const int fd = connect_to(relay.port());
  ASSERT_TRUE(send_pattern(fd, 1, 5000));
  ::shutdown(fd, SHUT_WR);
  const auto reply = receive_pattern(fd, 2);
  server.join();
  ::close(fd);
  EXPECT_EQ(request.bytes, 5000u);
  EXPECT_TRUE(request.clean_eof);
  EXPECT_EQ(reply.bytes, reply_bytes);
  EXPECT_EQ(reply.first_mismatch, UINT64_MAX);
  EXPECT_TRUE(reply.clean_eof);
}

TEST(latency_relay, RefusedTargetEndsTheClientsConnection) {
  uint16_t closed_port = 0;
  {
    listening_socket gone;
    closed_port = gone.port;
  }
  running_relay relay(closed_port, 1ms);
  const int fd = connect_to(relay.port());
  char c = 0;
  const ssize_t n = ::recv(fd, &c, 1, 0);
  const int error = errno;
  ::close(fd);
  EXPECT_TRUE(n == 0 || (n < 0 && error == ECONNRESET)) << "recv " << n << " errno " << error;
  EXPECT_EQ(relay.stats().target_connect_failures, 1u);
}

TEST(latency_relay, ResetByTheTargetReachesTheClient) {
  listening_socket target;
  running_relay relay(target.port, 1ms);
  const int fd = connect_to(relay.port());
  const int accepted = target.accept_one();
  ASSERT_GE(accepted, 0);
  linger hard{1, 0};
  ::setsockopt(accepted, SOL_SOCKET, SO_LINGER, &hard, sizeof hard);
  ::close(accepted);
  char c = 0;
  const ssize_t n = ::recv(fd, &c, 1, 0);
  const int error = errno;
  ::close(fd);
  EXPECT_TRUE(n < 0 && error == ECONNRESET) << "recv " << n << " errno " << error;
  EXPECT_EQ(relay.stats().connections_aborted, 1u);
}

TEST(latency_relay, StopEndsRunAndItsConnections) {
  listening_socket target;
  running_relay relay(target.port, 1ms);
  const int fd = connect_to(relay.port());
  const int accepted = target.accept_one();
  ASSERT_GE(accepted, 0);
  relay.stop_and_join();
  char c = 0;
  EXPECT_LE(::recv(fd, &c, 1, 0), 0);
  ::close(fd);
  ::close(accepted);
}

// --- relay: the delay is a lower bound ------------------------------------------------------

class relay_delay_test : public ::testing::TestWithParam<int> {};

TEST_P(relay_delay_test, NoByteAndNoEndOfStreamArrivesBeforeTheDelay) {
  const auto delay = std::chrono::milliseconds(GetParam());
  listening_socket target;
  running_relay relay(target.port, delay);
  const int client = connect_to(relay.port());
  const int server = target.accept_one();
  ASSERT_GE(server, 0);
  with_timeouts(server);
  char c = 'a';
  for (int round = 0; round < 3; ++round) {
    // client -> target
    auto sent = test_clock::now();
    ASSERT_EQ(::send(client, &c, 1, 0), 1);
    ASSERT_EQ(::recv(server, &c, 1, 0), 1);
    EXPECT_GE(test_clock::now() - sent, delay);
    // target -> client
    sent = test_clock::now();
    ASSERT_EQ(::send(server, &c, 1, 0), 1);
    ASSERT_EQ(::recv(client, &c, 1, 0), 1);
    EXPECT_GE(test_clock::now() - sent, delay);
  }
  // A round trip costs two delays.
  const auto sent = test_clock::now();
  std::thread echo([&] {
    char b;
    if (::recv(server, &b, 1, 0) == 1)
      ::send(server, &b, 1, 0);
  });
  ASSERT_EQ(::send(client, &c, 1, 0), 1);
  ASSERT_EQ(::recv(client, &c, 1, 0), 1);
  EXPECT_GE(test_clock::now() - sent, 2 * delay);
  echo.join();
  // The end of stream is delayed like the bytes before it.
  const auto closed = test_clock::now();
  ::shutdown(client, SHUT_WR);
  EXPECT_EQ(::recv(server, &c, 1, 0), 0);
  EXPECT_GE(test_clock::now() - closed, delay);
  ::close(client);
  ::close(server);
}

INSTANTIATE_TEST_SUITE_P(latency_relay, relay_delay_test, ::testing::Values(0, 20, 50));

// A client socket bound to `source` (any 127.x address works on loopback) connected to port.
int connect_from(const char* source, uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  auto from = loopback(0, source);
  auto to = loopback(port);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&from), sizeof from) != 0 ||
      ::connect(fd, reinterpret_cast<sockaddr*>(&to), sizeof to) != 0) {
    ::close(fd);
    throw std::runtime_error(std::string("connect_from: ") + std::strerror(errno));
  }
  with_timeouts(fd);
  return fd;
}

// One byte there and back through the relay; returns how long it took.
std::chrono::nanoseconds round_trip(int client, int server) {
  const auto sent = test_clock::now();
  char c = 'r';
  if (::send(client, &c, 1, 0) != 1 || ::recv(server, &c, 1, 0) != 1 ||
      ::send(server, &c, 1, 0) != 1 || ::recv(client, &c, 1, 0) != 1)
    throw std::runtime_error("round_trip: a byte was lost");
  return test_clock::now() - sent;
}

TEST(latency_relay, ASourcesExtraDelayAppliesToItsConnectionsOnly) {
  listening_socket target;
  latency_relay_options options{{"127.0.0.1", 0}, {"127.0.0.1", target.port}, 10ms};
  options.source_delays = {parse_source_delay("127.0.0.2=400")};
  latency_relay relay(options);
  std::thread loop([&] { relay.run(); });
  const int far_client = connect_from("127.0.0.2", relay.listen_port());
  const int far_server = target.accept_one();
  const int near_client = connect_from("127.0.0.1", relay.listen_port());
  const int near_server = target.accept_one();
  ASSERT_GE(far_server, 0);
  ASSERT_GE(near_server, 0);
  with_timeouts(far_server);
  with_timeouts(near_server);
  EXPECT_GE(round_trip(far_client, far_server), 2 * (10ms + 400ms));
  const auto near = round_trip(near_client, near_server);
  EXPECT_GE(near, 2 * 10ms);
  EXPECT_LT(near, 2 * 400ms) << "the other source's delay applied to this one";
  for (int fd : {far_client, far_server, near_client, near_server})
    ::close(fd);
  relay.stop();
  loop.join();
}

TEST(latency_relay, JitterNeverReordersAStream) {
  constexpr uint64_t bytes = 2'000'000;
  echo_server target(1);
  latency_relay_options options{{"127.0.0.1", 0}, {"127.0.0.1", target.port()}, 2ms};
  options.jitter = 20ms;
  latency_relay relay(options);
  std::thread loop([&] { relay.run(); });
  const int fd = connect_to(relay.listen_port());
  // Many small writes, so that many reads get different random delays.
  std::thread writer([&] {
    std::vector<char> block(1500);
    for (uint64_t offset = 0; offset < bytes; offset += block.size()) {
      block.resize(std::min<uint64_t>(1500, bytes - offset));
      fill_pattern(7, offset, block);
      if (!send_all(fd, block.data(), block.size()))
        break;
    }
    ::shutdown(fd, SHUT_WR);
  });
  const auto result = receive_pattern(fd, 7);
  writer.join();
  ::close(fd);
  relay.stop();
  loop.join();
  EXPECT_EQ(result.bytes, bytes);
  EXPECT_EQ(result.first_mismatch, UINT64_MAX);
  EXPECT_TRUE(result.clean_eof);
}

TEST(latency_relay, ParsesSourceDelaysAndRejectsBadOnes) {
  const auto parsed = parse_source_delay("10.77.0.3=12.5");
  EXPECT_EQ(parsed.address, "10.77.0.3");
  EXPECT_EQ(parsed.extra, 12500us);
  EXPECT_EQ(parse_source_delay("::1=0").address, "::1");
  for (const char* bad : {"10.77.0.3", "=5", "10.77.0.3=", "10.77.0.3=-1", "10.77.0.3=x",
                          "host.example=5", "10.77.0.3=5ms"})
    EXPECT_THROW(parse_source_delay(bad), latency_relay_error) << bad;
}

TEST(latency_relay, ManyShortConnectionsAllClose) {
  constexpr int connections = 200;
  echo_server target(connections);
  running_relay relay(target.port(), 1ms);
  std::vector<std::thread> clients;
  std::atomic<int> good{0};
  for (int group = 0; group < 4; ++group)
    clients.emplace_back([&, group] {
      for (int k = group; k < connections; k += 4) {
        const int fd = connect_to(relay.port());
        const std::string message = "hello " + std::to_string(k);
        send_all(fd, message.data(), message.size());
        ::shutdown(fd, SHUT_WR);
        std::string answer;
        char block[64];
        ssize_t n;
        while ((n = ::recv(fd, block, sizeof block, 0)) > 0)
          answer.append(block, static_cast<std::size_t>(n));
        ::close(fd);
        if (answer == message && n == 0)
          ++good;
      }
    });
  for (auto& c : clients)
    c.join();
  EXPECT_EQ(good.load(), connections);
  // Every connection ends cleanly once both FINs have passed; give the last ones their delay.
  for (int wait = 0; wait < 500 && relay.stats().connections_closed < connections; ++wait)
    std::this_thread::sleep_for(10ms);
  EXPECT_EQ(relay.stats().connections_closed, static_cast<uint64_t>(connections));
  EXPECT_EQ(relay.stats().connections_aborted, 0u);
}

// --- the relay executable ---------------------------------------------------------------------

#ifdef DDACTOR_LATENCY_RELAY_PROGRAM
TEST(latency_relay_program, AnnouncesItsPortRelaysAndStopsOnSigterm) {
  listening_socket target;
  int out[2];
  ASSERT_EQ(::pipe(out), 0);
  const std::string target_text = "127.0.0.1:" + std::to_string(target.port);
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(out[1], 1);
    ::close(out[0]);
    ::execl(DDACTOR_LATENCY_RELAY_PROGRAM, "ddactor_latency_relay", "--listen", "127.0.0.1:0",
            "--target", target_text.c_str(), "--delay-ms", "10", nullptr);
    ::_exit(127);
  }
  ::close(out[1]);
  std::string line;
  char c;
  pollfd p{out[0], POLLIN, 0};
  while (::poll(&p, 1, 30000) == 1 && ::read(out[0], &c, 1) == 1 && c != '\n')
    line += c;
  ::close(out[0]);
  ASSERT_EQ(line.rfind("listening on 127.0.0.1:", 0), 0u) << line;
  const auto port = static_cast<uint16_t>(std::stoul(line.substr(23, line.find(" ->") - 23)));
  const int fd = connect_to(port);
  const int accepted = target.accept_one();
  ASSERT_GE(accepted, 0);
  ASSERT_TRUE(send_pattern(fd, 3, 100000));
  ::shutdown(fd, SHUT_WR);
  with_timeouts(accepted);
  const auto got = receive_pattern(accepted, 3);
  EXPECT_EQ(got.bytes, 100000u);
  EXPECT_EQ(got.first_mismatch, UINT64_MAX);
  ::close(fd);
  ::close(accepted);
  ::kill(pid, SIGTERM);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
}

TEST(latency_relay_program, RejectsBadArgumentsWithExitCodeTwo) {
  for (const auto& args : std::vector<std::vector<const char*>>{
         {"--listen", "127.0.0.1:0"},
         {"--listen", "127.0.0.1", "--target", "127.0.0.1:1", "--delay-ms", "1"},
         {"--listen", "127.0.0.1:0", "--target", "127.0.0.1:1", "--delay-ms", "-3"},
         {"--listen", "127.0.0.1:0", "--target", "127.0.0.1:1", "--delay-ms", "x"},
         {"--listen", "127.0.0.1:0", "--target", "127.0.0.1:1", "--delay-ms", "1",
          "--source-delay", "nowhere=3"},
         {"--listen", "127.0.0.1:0", "--target", "127.0.0.1:1", "--delay-ms", "1",
          "--jitter-ms", "-2"},
         {"--bogus", "1"}}) {
    const pid_t pid = ::fork();
    if (pid == 0) {
      std::vector<const char*> argv{"ddactor_latency_relay"};
      argv.insert(argv.end(), args.begin(), args.end());
      argv.push_back(nullptr);
      const int null_fd = ::open("/dev/null", O_WRONLY);
      ::dup2(null_fd, 2);
      ::execv(DDACTOR_LATENCY_RELAY_PROGRAM, const_cast<char* const*>(argv.data()));
      ::_exit(127);
    }
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 2) << args[0] << " " << status;
  }
}
#endif

// --- the lab (root only) ----------------------------------------------------------------------

std::set<std::string> namespaces_now() {
  std::set<std::string> names;
  FILE* pipe = ::popen("ip netns list 2>/dev/null", "r");
  if (pipe == nullptr)
    return names;
  char line[512];
  while (std::fgets(line, sizeof line, pipe) != nullptr) {
    std::string name(line);
    names.insert(name.substr(0, name.find_first_of(" \n")));
  }
  ::pclose(pipe);
  return names;
}

std::vector<std::string> names_with_prefix(const std::string& prefix) {
  std::vector<std::string> found;
  for (const auto& name : namespaces_now())
    if (name.rfind(prefix, 0) == 0)
      found.push_back(name);
  return found;
}

std::string read_text(const std::filesystem::path& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

#define SKIP_WITHOUT_LAB(statement)                                                          \
  try {                                                                                      \
    statement;                                                                               \
  } catch (const netlab_unavailable& e) {                                                    \
    GTEST_SKIP() << e.what();                                                                \
  }

TEST(netlab, RejectsBadArguments) {
  EXPECT_THROW(netlab(0), netlab_error);
  EXPECT_THROW(netlab(251), netlab_error);
  netlab_options bad_subnet;
  bad_subnet.subnet = "192.168.1";
  EXPECT_THROW(netlab(2, bad_subnet), netlab_error);
  bad_subnet.subnet = "10.1";
  EXPECT_THROW(netlab(2, bad_subnet), netlab_error);
  netlab_options negative;
  negative.one_way_delay_ms = -1;
  EXPECT_THROW(netlab(2, negative), netlab_error);
}

TEST(netlab, HostsReachEachOtherAndNothingIsLeftBehind) {
  std::string prefix;  // other tests may build labs at the same time: look at ours only
  {
    std::unique_ptr<netlab> lab;
    SKIP_WITHOUT_LAB(lab = std::make_unique<netlab>(3));
    ASSERT_EQ(lab->hosts(), 3);
    EXPECT_EQ(lab->address(0), "10.77.0.1");
    EXPECT_EQ(lab->address(2), "10.77.0.3");
    EXPECT_THROW(lab->address(3), netlab_error);
    EXPECT_NE(lab->namespace_name(0), lab->namespace_name(1));
    prefix = lab->namespace_name(0).substr(0, lab->namespace_name(0).size() - 2);  // "h0"
    EXPECT_EQ(names_with_prefix(prefix).size(), 4u);  // 3 hosts and the hub
    for (int from = 0; from < 3; ++from)
      for (int to = 0; to < 3; ++to) {
        if (from == to)
          continue;
        SCOPED_TRACE(std::to_string(from) + " -> " + std::to_string(to));
        std::unique_ptr<listening_socket> server;
        const std::string to_address = lab->address(to);
        lab->run_in_host(to, [&] {
          server = std::make_unique<listening_socket>(to_address.c_str());
        });
        int client = -1;
        lab->run_in_host(from, [&] { client = connect_to(server->port, to_address.c_str()); });
        const int accepted = server->accept_one();
        ASSERT_GE(accepted, 0);
        EXPECT_EQ(peer_address_of(accepted), lab->address(from));
        ::close(accepted);
        ::close(client);
      }
  }
  EXPECT_TRUE(names_with_prefix(prefix).empty());
}

// Whether a TCP connection to host:port opens within `timeout` (a dropped SYN: false).
bool connects_within(uint16_t port, const char* host, std::chrono::milliseconds timeout) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  timeval limit{static_cast<time_t>(timeout.count() / 1000),
                static_cast<suseconds_t>((timeout.count() % 1000) * 1000)};
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &limit, sizeof limit);
  auto a = loopback(port, host);
  const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(fd);
  return ok;
}

// A host behind a home router: its connections leave masqueraded as the router's address, and
// nothing from outside reaches it (the firewall drops the SYN: the dialer times out).
TEST(netlab, HostBehindNatReachesOutAndNothingReachesIt) {
  std::string prefix;
  {
    std::unique_ptr<netlab> lab;
    netlab_options options;
    options.behind_nat = {false, true};
    options.rate_mbit = 100;
    SKIP_WITHOUT_LAB(lab = std::make_unique<netlab>(2, options));
    ASSERT_TRUE(lab->behind_nat(1));
    ASSERT_FALSE(lab->behind_nat(0));
    prefix = lab->namespace_name(0).substr(0, lab->namespace_name(0).size() - 2);
    EXPECT_EQ(names_with_prefix(prefix).size(), 4u);  // 2 hosts, 1 router, the hub

    std::unique_ptr<listening_socket> outside;
    const std::string public_address = lab->address(0);
    lab->run_in_host(0, [&] {
      outside = std::make_unique<listening_socket>(public_address.c_str());
    });
    int client = -1;
    lab->run_in_host(1, [&] { client = connect_to(outside->port, public_address.c_str()); });
    const int accepted = outside->accept_one();
    ASSERT_GE(accepted, 0);
    EXPECT_EQ(peer_address_of(accepted), lab->address(1));  // the router's, masqueraded
    ::close(accepted);
    ::close(client);

    std::unique_ptr<listening_socket> inside;
    lab->run_in_host(1, [&] { inside = std::make_unique<listening_socket>("0.0.0.0"); });
    bool reached = true;
    const std::string router_address = lab->address(1);
    lab->run_in_host(0, [&] {
      reached = connects_within(inside->port, router_address.c_str(), 2s);
    });
    EXPECT_FALSE(reached) << "a connection from outside reached the host behind NAT";
    lab->run_in_host(0, [&] { reached = connects_within(inside->port, "192.168.1.2", 1s); });
    EXPECT_FALSE(reached) << "the LAN address was routable from outside";
    EXPECT_THROW(lab->add_relay(1, 7000), netlab_error);
  }
  EXPECT_TRUE(names_with_prefix(prefix).empty());
}

// loss_percent drops packets at random on each host's link (nftables), and TCP still carries
// every byte; the lab counts what it dropped.
TEST(netlab, LossyLinksDropPacketsAndTcpStillDeliversEverything) {
  std::unique_ptr<netlab> lab;
  netlab_options options;
  options.loss_percent = 2.0;
  options.behind_nat = {false, true};
  SKIP_WITHOUT_LAB(lab = std::make_unique<netlab>(2, options));
  std::unique_ptr<listening_socket> server;
  const std::string address = lab->address(0);
  lab->run_in_host(0, [&] { server = std::make_unique<listening_socket>(address.c_str()); });
  int client = -1;
  lab->run_in_host(1, [&] { client = connect_to(server->port, address.c_str()); });
  const int accepted = server->accept_one();
  ASSERT_GE(accepted, 0);
  with_timeouts(accepted);
  const std::vector<char> block(1 << 20, 'z');
  std::thread writer([&] {
    for (int k = 0; k < 8; ++k)
      ASSERT_EQ(::send(client, block.data(), block.size(), MSG_NOSIGNAL),
                static_cast<ssize_t>(block.size()));
    ::shutdown(client, SHUT_WR);
  });
  size_t received = 0;
  std::vector<char> buffer(1 << 16);
  for (ssize_t n; (n = ::read(accepted, buffer.data(), buffer.size())) > 0;)
    received += static_cast<size_t>(n);
  writer.join();
  EXPECT_EQ(received, 8u * block.size());
  EXPECT_GT(lab->dropped_packets(0) + lab->dropped_packets(1), 0u);
  ::close(accepted);
  ::close(client);
  netlab_options bad;
  bad.loss_percent = 101;
  EXPECT_THROW(netlab(1, bad), netlab_error);
}

TEST(netlab, ExceptionsInsideRunInHostReachTheCaller) {
  std::unique_ptr<netlab> lab;
  SKIP_WITHOUT_LAB(lab = std::make_unique<netlab>(1));
  EXPECT_THROW(lab->run_in_host(0, [] { throw std::logic_error("inside"); }), std::logic_error);
  EXPECT_THROW(lab->run_in_host(1, [] {}), netlab_error);
}

TEST(netlab, SpawnRunsInTheHostsNamespaceAndWaitReportsTheExitCode) {
  std::unique_ptr<netlab> lab;
  SKIP_WITHOUT_LAB(lab = std::make_unique<netlab>(2));
  const auto log = lab->options().log_directory / "spawn" / "ip.log";
  const pid_t pid = lab->spawn(1, {"ip", "-4", "-o", "addr", "show", "dev", "eth0"}, log);
  EXPECT_EQ(lab->wait(pid, 30s), 0);
  EXPECT_NE(read_text(log).find(lab->address(1) + "/24"), std::string::npos) << read_text(log);
  const pid_t failing = lab->spawn(0, {"sh", "-c", "exit 3"}, log);
  EXPECT_EQ(lab->wait(failing, 30s), 3);
  const pid_t sleeper = lab->spawn(0, {"sleep", "600"}, log);
  EXPECT_FALSE(lab->wait(sleeper, 0ms).has_value());
  EXPECT_EQ(lab->stop(sleeper), 128 + SIGTERM);
  EXPECT_THROW(lab->spawn(0, {"no-such-program-anywhere"}, log), netlab_error);
  EXPECT_THROW(lab->wait(::getpid(), 0ms), netlab_error);
}

TEST(netlab, ShapedLabInstallsQdiscsAndRelaysDelayBytes) {
  netlab_options options;
  options.rate_mbit = 100;
  options.one_way_delay_ms = 30;
  options.delay_mode = netlab_delay_mode::relay;
  std::unique_ptr<netlab> lab;
  SKIP_WITHOUT_LAB(lab = std::make_unique<netlab>(2, options));
  EXPECT_FALSE(lab->kernel_delay());
  EXPECT_TRUE(lab->needs_relays());
  const auto log = lab->options().log_directory / "tc.log";
  const pid_t tc = lab->spawn(0, {"tc", "qdisc", "show", "dev", "eth0"}, log);
  ASSERT_EQ(lab->wait(tc, 30s), 0);
  EXPECT_NE(read_text(log).find("tbf"), std::string::npos) << read_text(log);
  EXPECT_NE(read_text(log).find("100Mbit"), std::string::npos) << read_text(log);

  std::unique_ptr<listening_socket> server;
  const std::string address = lab->address(1);
  lab->run_in_host(1, [&] { server = std::make_unique<listening_socket>(address.c_str()); });
  const uint16_t relayed = lab->add_relay(1, server->port);
  EXPECT_NE(relayed, server->port);
  int client = -1;
  lab->run_in_host(0, [&] { client = connect_to(relayed, address.c_str()); });
  const int accepted = server->accept_one();
  ASSERT_GE(accepted, 0);
  with_timeouts(accepted);
  const auto sent = test_clock::now();
  char c = 'x';
  ASSERT_EQ(::send(client, &c, 1, 0), 1);
  ASSERT_EQ(::recv(accepted, &c, 1, 0), 1);
  ASSERT_EQ(::send(accepted, &c, 1, 0), 1);
  ASSERT_EQ(::recv(client, &c, 1, 0), 1);
  EXPECT_GE(test_clock::now() - sent, 60ms);  // 2 x 30 ms, a lower bound
  ::close(client);
  ::close(accepted);
}

// Each host's access link has its own delay and an upload slower than its download: a path
// from host i to host j takes d_i + d_j each way, whichever host dials.
TEST(netlab, PerHostDelaysAddUpAndUploadsAreShapedApart) {
  netlab_options options;
  options.rate_mbit = 100;
  options.host_upload_mbit = {0, 10, 20};
  options.host_delay_ms = {5, 40, 80};
  options.jitter_ms = 2;
  options.delay_mode = netlab_delay_mode::relay;
  std::unique_ptr<netlab> lab;
  SKIP_WITHOUT_LAB(lab = std::make_unique<netlab>(3, options));
  EXPECT_TRUE(lab->needs_relays());
  EXPECT_EQ(lab->path_delay_ms(1, 2), 120);
  EXPECT_EQ(lab->upload_mbit(1), 10);
  EXPECT_EQ(lab->upload_mbit(0), 100);
  EXPECT_EQ(lab->rate_mbit(1), 100);
  // Host 1 uploads at 10 Mbit/s and downloads at 100.
  const auto log = lab->options().log_directory / "tc-h1.log";
  const pid_t tc = lab->spawn(1, {"tc", "qdisc", "show", "dev", "eth0"}, log);
  ASSERT_EQ(lab->wait(tc, 30s), 0);
  EXPECT_NE(read_text(log).find("rate 10Mbit"), std::string::npos) << read_text(log);

  std::unique_ptr<listening_socket> server;
  const std::string address = lab->address(2);
  lab->run_in_host(2, [&] { server = std::make_unique<listening_socket>(address.c_str()); });
  const uint16_t relayed = lab->add_relay(2, server->port);
  for (int from : {0, 1}) {
    SCOPED_TRACE("from host " + std::to_string(from));
    int client = -1;
    lab->run_in_host(from, [&] { client = connect_to(relayed, address.c_str()); });
    const int accepted = server->accept_one();
    ASSERT_GE(accepted, 0);
    with_timeouts(accepted);
    const auto expected =
      std::chrono::duration<double, std::milli>(2 * (lab->path_delay_ms(from, 2) - 2));
    EXPECT_GE(round_trip(client, accepted), expected);  // less the jitter, a lower bound
    ::close(client);
    ::close(accepted);
  }
}

TEST(netlab, KernelDelayModeIsExplicitAboutMissingNetem) {
  netlab_options options;
  options.one_way_delay_ms = 10;
  options.delay_mode = netlab_delay_mode::kernel;
  try {
    netlab lab(1, options);
    EXPECT_TRUE(lab.kernel_delay());
    EXPECT_FALSE(lab.needs_relays());
    EXPECT_EQ(lab.add_relay(0, 1234), 1234);
  } catch (const netlab_unavailable& e) {
    // Here when not root, or (then the message must say so) when netem is missing.
    if (::geteuid() == 0) {
      EXPECT_NE(std::string(e.what()).find("netem"), std::string::npos) << e.what();
    }
  }
}

TEST(netlab, FailureWhileBuildingLeavesNothingBehind) {
  netlab_options options;
  options.name_prefix = "ddl" + std::to_string(::getpid()) + "-failtest-";
  options.rate_mbit = 1e15;  // tc refuses this rate: the build fails after making namespaces
  try {
    netlab lab(2, options);
    ADD_FAILURE() << "tc accepted a rate of 10^21 bit/s";
  } catch (const netlab_unavailable& e) {
    GTEST_SKIP() << e.what();
  } catch (const netlab_error& e) {
    EXPECT_NE(std::string(e.what()).find("tc"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(names_with_prefix(options.name_prefix).empty());
}

TEST(netlab, CleanupStaleRemovesLabsOfDeadProcessesOnly) {
  if (::geteuid() != 0)
    GTEST_SKIP() << "needs root";
  // Named like labs: "ddl<pid>-...". 4194305 is above any Linux pid, so that process is dead.
  const std::string dead = "ddl4194305-cleanuptest-hub";
  const std::string alive = "ddl" + std::to_string(::getpid()) + "-cleanuptest-hub";
  if (std::system(("ip netns add " + dead + " && ip netns add " + alive).c_str()) != 0)
    GTEST_SKIP() << "cannot create network namespaces";
  int removed = 0;
  try {
    removed = netlab::cleanup_stale("ddl");
  } catch (const netlab_unavailable& e) {
    GTEST_SKIP() << e.what();
  }
  EXPECT_GE(removed, 1);  // more if a dead run left some
  const auto after = namespaces_now();
  EXPECT_EQ(after.count(dead), 0u);
  EXPECT_EQ(after.count(alive), 1u);
  std::system(("ip netns del " + alive + " 2>/dev/null").c_str());
  std::system(("ip netns del " + dead + " 2>/dev/null").c_str());
}

}  // namespace
}  // namespace ddactor
