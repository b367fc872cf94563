// Two gateways on loopback carry a plain TCP stream between a client and an echo server (which
// stand in for CAF at both ends); strangers, garbage and slow handshakes are refused.
#include "runtime/secure/link_gateway.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "monitoring/ddactor_metrics.hpp"
#include "tests/runtime/secure/socket_helpers.hpp"

namespace ddactor {
namespace {

using namespace std::chrono_literals;

link_gateway_options fast_options() {
  link_gateway_options options;
  options.handshake_timeout = 400ms;
  options.max_handshakes_per_address = 4;
  return options;
}

// Two gateways of one swarm; b's inbound links reach the echo server.
struct two_members {
  echo_server server;
  link_gateway a{peer_key::generate(), admission_policy::of_swarm(swarm_key(1)), fast_options()};
  link_gateway b{peer_key::generate(), admission_policy::of_swarm(swarm_key(1)), fast_options()};
  two_members() { b.set_local_port(server.port()); }
};

TEST(link_gateway, carries_a_stream_both_ways_between_members) {
  two_members m;
  auto& [server, a, b] = m;
  std::string error;
  auto tunnel = a.open_tunnel("127.0.0.1", b.public_port(), error);
  ASSERT_TRUE(tunnel) << error;
  int fd = connect_to(*tunnel);
  ASSERT_GE(fd, 0);
  std::vector<uint8_t> message;
  EXPECT_EQ(echo_through(fd, 3 << 20, 13, message), message);
  EXPECT_EQ(server.accepted(), 1);
  EXPECT_EQ(a.snapshot().handshakes_ok, 1u);
  EXPECT_EQ(b.snapshot().handshakes_ok, 1u);
  ::close(fd);
}

// A gateway on IPv4 and IPv6 accepts links on both, at one port; a second host on a taken port
// is a clear error naming it.
TEST(link_gateway, listens_on_every_host_given_at_one_port) {
  echo_server server;
  auto dual_stack = fast_options();
  dual_stack.listen_hosts = {"127.0.0.1", "::1"};
  link_gateway b{peer_key::generate(), admission_policy::of_swarm(swarm_key(1)), dual_stack};
  b.set_local_port(server.port());
  link_gateway a{peer_key::generate(), admission_policy::of_swarm(swarm_key(1)), fast_options()};
  for (const char* host : {"127.0.0.1", "::1"}) {
    SCOPED_TRACE(host);
    std::string error;
    auto tunnel = a.open_tunnel(host, b.public_port(), error);
    ASSERT_TRUE(tunnel) << error;
    int fd = connect_to(*tunnel);
    ASSERT_GE(fd, 0);
    std::vector<uint8_t> message;
    EXPECT_EQ(echo_through(fd, 1 << 20, 7, message), message);
    ::close(fd);
  }
  EXPECT_EQ(b.snapshot().handshakes_ok, 2u);
  auto taken = fast_options();
  taken.listen_hosts = {"::1", "127.0.0.1"};
  taken.listen_port = b.public_port();
  try {
    link_gateway clash{peer_key::generate(), admission_policy::of_swarm(swarm_key(1)), taken};
    ADD_FAILURE() << "a taken port was bound";
  } catch (const link_gateway_error& e) {
    EXPECT_NE(std::string(e.what()).find(":" + std::to_string(b.public_port())),
              std::string::npos)
      << e.what();
  }
}

// Each gateway knows when the other's bytes last arrived and the round trip of their handshake:
// what membership uses to tell a busy far member from a silent one.
TEST(link_gateway, notes_when_each_peer_was_last_heard_and_its_round_trip) {
  two_members m;
  auto& [server, a, b] = m;
  EXPECT_TRUE(a.heard_from().empty());
  std::string error;
  auto tunnel = a.open_tunnel("127.0.0.1", b.public_port(), error);
  ASSERT_TRUE(tunnel) << error;
  int fd = connect_to(*tunnel);
  ASSERT_GE(fd, 0);
  const auto before = std::chrono::steady_clock::now();
  std::vector<uint8_t> message;
  EXPECT_EQ(echo_through(fd, 1 << 20, 5, message), message);
  const auto heard_by_a = a.heard_from();
  ASSERT_EQ(heard_by_a.size(), 1u);
  EXPECT_EQ(heard_by_a.begin()->first.size(), 32u);  // a peer id
  EXPECT_GT(heard_by_a.begin()->second.round_trip.count(), 0);
  EXPECT_LT(heard_by_a.begin()->second.round_trip, 5s);
  EXPECT_GE(heard_by_a.begin()->second.last_bytes + 100ms, before);  // the echo came back
  EXPECT_EQ(heard_by_a.begin()->second.loss_stall.count(), 0);  // loopback loses nothing
  const auto heard_by_b = b.heard_from();
  ASSERT_EQ(heard_by_b.size(), 1u);
  EXPECT_NE(heard_by_b.begin()->first, heard_by_a.begin()->first);
  EXPECT_GT(heard_by_b.begin()->second.round_trip.count(), 0);
  ::close(fd);
}

// A link on which nothing arrives for idle_timeout is closed; one that keeps speaking, however
// slowly its messages complete, is not.
TEST(link_gateway, closes_a_silent_link_and_keeps_a_slow_one) {
  auto options = fast_options();
  options.idle_timeout = 600ms;
  echo_server server;
  link_gateway a{peer_key::generate(), admission_policy::of_swarm(swarm_key(1)), options};
  link_gateway b{peer_key::generate(), admission_policy::of_swarm(swarm_key(1)), options};
  b.set_local_port(server.port());
  std::string error;
  // Slow: one byte every 200 ms for 2 s (a message that takes long to complete).
  auto tunnel = a.open_tunnel("127.0.0.1", b.public_port(), error);
  ASSERT_TRUE(tunnel) << error;
  int slow = connect_to(*tunnel);
  ASSERT_GE(slow, 0);
  for (int k = 0; k < 10; ++k) {
    const uint8_t byte = static_cast<uint8_t>(k);
    ASSERT_EQ(::send(slow, &byte, 1, MSG_NOSIGNAL), 1) << "the slow link closed at byte " << k;
    uint8_t back = 0;
    ASSERT_EQ(::recv(slow, &back, 1, 0), 1) << "the slow link closed at byte " << k;
    EXPECT_EQ(back, byte);
    std::this_thread::sleep_for(200ms);
  }
  // Silent: nothing either way; both gateways end it (and count it), and the client sees its
  // end.
  const double silent_before = link_metrics(global_metrics()).silent_closed.value();
  pollfd p{slow, POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, 5000), 1) << "a silent link stayed open";
  uint8_t byte = 0;
  EXPECT_LE(::recv(slow, &byte, 1, 0), 0);
  EXPECT_GE(link_metrics(global_metrics()).silent_closed.value(), silent_before + 1);
  ::close(slow);
}

// A ban (misbehaviour_scores.hpp, through the averager) closes the peer's open link at once and
// refuses its handshakes, counted as "banned", until the ban ends.
TEST(link_gateway, a_banned_peer_loses_its_link_and_is_refused_until_the_ban_ends) {
  echo_server server;
  const auto a_key = peer_key::generate();
  link_gateway a(a_key, admission_policy::of_swarm(swarm_key(1)), fast_options());
  link_gateway b(peer_key::generate(), admission_policy::of_swarm(swarm_key(1)), fast_options());
  b.set_local_port(server.port());
  const auto a_id = peer_id_of(a_key.public_part());
  std::string error;
  auto linked = [&] {
    auto tunnel = a.open_tunnel("127.0.0.1", b.public_port(), error);
    return tunnel ? connect_to(*tunnel) : -1;
  };
  int fd = linked();
  ASSERT_GE(fd, 0) << error;
  std::vector<uint8_t> message;
  EXPECT_EQ(echo_through(fd, 4096, 5, message), message);
  b.ban(a_id, std::chrono::steady_clock::now() + std::chrono::hours(1));
  EXPECT_TRUE(closed_within(fd, 5s));
  ::close(fd);
  const double before = failures("banned");
  fd = linked();
  ASSERT_GE(fd, 0) << error;
  send_all(fd, {1, 2, 3});
  EXPECT_TRUE(closed_within(fd, 5s));
  ::close(fd);
  EXPECT_GE(failures("banned"), before + 1);
  EXPECT_EQ(server.accepted(), 1);
  // Once the ban has ended, the peer is admitted again.
  b.ban(a_id, std::chrono::steady_clock::now() - std::chrono::seconds(1));
  fd = linked();
  ASSERT_GE(fd, 0) << error;
  EXPECT_EQ(echo_through(fd, 4096, 6, message), message);
  ::close(fd);
}

TEST(link_gateway, a_peer_with_the_wrong_key_never_reaches_the_local_side) {
  echo_server server;
  link_gateway b(peer_key::generate(), admission_policy::of_swarm(swarm_key(1)),
                 fast_options());
  b.set_local_port(server.port());
  link_gateway stranger(peer_key::generate(), admission_policy::of_swarm(swarm_key(2)),
                        fast_options());
  const double before = failures("wrong_swarm_key");
  std::string error;
  auto tunnel = stranger.open_tunnel("127.0.0.1", b.public_port(), error);
  ASSERT_TRUE(tunnel) << error;
  int fd = connect_to(*tunnel);
  ASSERT_GE(fd, 0);
  send_all(fd, {1, 2, 3});
  EXPECT_TRUE(closed_within(fd, 5s));
  ::close(fd);
  EXPECT_EQ(server.accepted(), 0);
  EXPECT_GE(failures("wrong_swarm_key"), before + 1);
  EXPECT_EQ(b.snapshot().handshakes_ok, 0u);
}

TEST(link_gateway, garbage_huge_frames_and_silence_cost_bounded_memory_and_keep_members_linked) {
  two_members m;
  auto& [server, a, b] = m;
  std::string error;
  auto tunnel = a.open_tunnel("127.0.0.1", b.public_port(), error);
  ASSERT_TRUE(tunnel);
  int member = connect_to(*tunnel);
  send_all(member, {9, 9});
  ASSERT_EQ(read_bytes(member, 2), (std::vector<uint8_t>{9, 9}));

  const double bad_version = failures("bad_version"), timeouts = failures("timeout");
  const double limited = failures("too_many_connections");
  // An HTTP request, a BASP-like header announcing 4 GiB, and random bytes.
  std::vector<std::vector<uint8_t>> attacks;
  attacks.push_back(std::vector<uint8_t>(100, 'G'));
  attacks.push_back({0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, 0, 0, 0,
                     0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                     0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0});
  std::vector<uint8_t> noise(1 << 20);
  for (size_t i = 0; i < noise.size(); ++i)
    noise[i] = static_cast<uint8_t>((i * 2654435761u) >> 13);
  attacks.push_back(noise);
  for (auto& attack : attacks) {
    int fd = connect_to(b.public_port());
    ASSERT_GE(fd, 0);
    send_all(fd, attack);
    EXPECT_TRUE(closed_within(fd, 5s));
    ::close(fd);
  }
  EXPECT_GE(failures("bad_version"), bad_version + attacks.size());
  // Connections that say nothing are dropped after the handshake timeout; past the
  // per-address limit they are refused at once.
  std::vector<int> silent;
  for (int i = 0; i < 10; ++i)
    silent.push_back(connect_to(b.public_port()));
  for (int fd : silent) {
    EXPECT_TRUE(closed_within(fd, 5s));
    ::close(fd);
  }
  EXPECT_GE(failures("timeout"), timeouts + 1);
  EXPECT_GE(failures("too_many_connections"), limited + 1);
  EXPECT_EQ(server.accepted(), 1);
  // The member's link carried on through all of it.
  send_all(member, {4, 5, 6});
  EXPECT_EQ(read_bytes(member, 3), (std::vector<uint8_t>{4, 5, 6}));
  ::close(member);
}


// A relay between two gateways that flips one bit of the stream from the dialing side at
// `flip_at` (a man in the middle on the path).
class tampering_relay {
 public:
  tampering_relay(uint16_t target, size_t flip_at) : target_(target), flip_at_(flip_at) {
    fd_ = listen_on_loopback(port_);
    thread_ = std::thread([this] { relay(); });
  }
  ~tampering_relay() {
    stop_ = true;
    thread_.join();
    ::close(fd_);
  }
  uint16_t port() const { return port_; }

 private:
  void relay() {
    pollfd p{fd_, POLLIN, 0};
    while (!stop_ && ::poll(&p, 1, 50) <= 0) {
    }
    if (stop_)
      return;
    int from = ::accept(fd_, nullptr, nullptr);
    int to = connect_to(target_);
    size_t forwarded = 0;
    while (!stop_) {
      pollfd both[2] = {{from, POLLIN, 0}, {to, POLLIN, 0}};
      if (::poll(both, 2, 50) <= 0)
        continue;
      uint8_t buffer[65536];
      if (both[0].revents) {
        auto n = ::recv(from, buffer, sizeof buffer, 0);
        if (n <= 0)
          break;
        for (ssize_t i = 0; i < n; ++i, ++forwarded)
          if (forwarded == flip_at_)
            buffer[i] ^= 0x04;
        send_all(to, std::vector<uint8_t>(buffer, buffer + n));
      }
      if (both[1].revents) {
        auto n = ::recv(to, buffer, sizeof buffer, 0);
        if (n <= 0)
          break;
        send_all(from, std::vector<uint8_t>(buffer, buffer + n));
      }
    }
    ::close(from);
    ::close(to);
  }

  uint16_t target_;
  size_t flip_at_;
  int fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// An admitted peer (it holds the swarm key) announces a 4 GiB BASP message: its link ends before
// the header reaches CAF, which would allocate for it; well-formed messages pass untouched.
TEST(link_gateway, an_admitted_peer_announcing_a_huge_message_loses_its_link_first) {
  echo_server server;
  auto guarded = fast_options();
  guarded.max_message_bytes = 1 << 20;
  link_gateway a(peer_key::generate(), admission_policy::of_swarm(swarm_key(1)), fast_options());
  link_gateway b(peer_key::generate(), admission_policy::of_swarm(swarm_key(1)), guarded);
  b.set_local_port(server.port());
  auto basp_message = [](uint32_t payload) {
    std::vector<uint8_t> bytes(32 + payload, 0x5a);
    for (int i = 0; i < 4; ++i)
      bytes[static_cast<size_t>(4 + i)] = static_cast<uint8_t>(payload >> (24 - 8 * i));
    return bytes;
  };
  const double before = failures("message_too_large");
  std::string error;
  auto tunnel = a.open_tunnel("127.0.0.1", b.public_port(), error);
  ASSERT_TRUE(tunnel) << error;
  int fd = connect_to(*tunnel);
  ASSERT_GE(fd, 0);
  auto fine = basp_message(1000);
  auto largest = basp_message(1 << 20);
  fine.insert(fine.end(), largest.begin(), largest.end());
  std::thread writer([&] { send_all(fd, fine); });
  EXPECT_EQ(read_bytes(fd, fine.size(), 20s), fine);
  writer.join();
  auto huge = basp_message(0);
  huge[4] = huge[5] = huge[6] = huge[7] = 0xff;
  send_all(fd, huge);
  EXPECT_TRUE(read_bytes(fd, huge.size(), 1s).empty());  // it never reached the local side
  EXPECT_TRUE(closed_within(fd, 5s));
  ::close(fd);
  EXPECT_GE(failures("message_too_large"), before + 1);
}

TEST(link_gateway, a_byte_tampered_on_the_path_ends_the_link_and_nothing_forged_arrives) {
  two_members m;
  auto& [server, a, b] = m;
  // Past the hello and finish: a bit inside the first sealed frame.
  tampering_relay relay(b.public_port(), handshake::hello_size + handshake::finish_size + 9);
  const double forged = failures("forged_frame");
  std::string error;
  auto tunnel = a.open_tunnel("127.0.0.1", relay.port(), error);
  ASSERT_TRUE(tunnel) << error;
  int fd = connect_to(*tunnel);
  ASSERT_GE(fd, 0);
  send_all(fd, std::vector<uint8_t>(100, 0x55));
  EXPECT_TRUE(read_bytes(fd, 100, 2s).empty());
  EXPECT_TRUE(closed_within(fd, 5s));
  ::close(fd);
  EXPECT_EQ(b.snapshot().handshakes_ok, 1u);
  EXPECT_GE(failures("forged_frame"), forged + 1);
}

TEST(link_gateway, an_unresolvable_host_is_a_clear_error) {
  link_gateway a(peer_key::generate(), admission_policy::of_swarm({}), fast_options());
  std::string error;
  EXPECT_FALSE(a.open_tunnel("no-such-host.invalid", 7000, error));
  EXPECT_NE(error.find("no-such-host.invalid"), std::string::npos) << error;
}

} // namespace
} // namespace ddactor
