// The gateway's services for peers behind NAT, on loopback: a relay splices a dialer's link to a
// peer holding a reservation (the relay carries sealed bytes it cannot read), refuses strangers
// and unknown peers; a probe learns the address it was seen at and whether a dial-back arrives.
#include <gtest/gtest.h>

#include "monitoring/ddactor_metrics.hpp"
#include "runtime/secure/link_gateway.hpp"
#include "runtime/secure/reachability.hpp"
#include "tests/runtime/secure/socket_helpers.hpp"

namespace ddactor {
namespace {

link_gateway_options fast_options() {
  link_gateway_options options;
  options.handshake_timeout = 1000ms;
  options.dial_back_timeout = 1000ms;
  return options;
}

// Waits until `done` holds or `timeout` passes; returns done().
template <class Predicate>
bool eventually(Predicate done, std::chrono::milliseconds timeout = 5s) {
  auto until = std::chrono::steady_clock::now() + timeout;
  while (!done() && std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(10ms);
  return done();
}

// Whether the gateway's one reservation reaches `state` within 5 s.
bool reservation_becomes(const link_gateway& g, relay_reservation::state state) {
  return eventually([&] {
    auto all = g.reservations();
    return all.size() == 1 && all[0].current == state;
  });
}

// A port nothing listens on (bound, then closed).
uint16_t closed_port() {
  uint16_t port = 0;
  ::close(listen_on_loopback(port));
  return port;
}

// Three members of one swarm: `unreachable` holds a reservation at `relay`; `dialer` reaches it
// through the relay. Each gateway's CAF side is an echo server of its own.
struct relayed_swarm {
  echo_server relay_caf, unreachable_caf;
  peer_key unreachable_key = peer_key::generate();
  link_gateway relay{peer_key::generate(), admission_policy::of_swarm(swarm_key(1)),
                     fast_options()};
  link_gateway unreachable{unreachable_key, admission_policy::of_swarm(swarm_key(1)),
                           fast_options()};
  link_gateway dialer{peer_key::generate(), admission_policy::of_swarm(swarm_key(1)),
                      fast_options()};
  relayed_swarm() {
    relay.set_local_port(relay_caf.port());
    unreachable.set_local_port(unreachable_caf.port());
    unreachable.reserve("127.0.0.1", relay.public_port());
  }
  std::string unreachable_id() const { return peer_id_of(unreachable_key.public_part()); }
  // The reservation is active at both ends. The reserver, the handshake's initiator, finishes
  // first (its last message is still on its way to the relay): a test that checks or dials the
  // relay at once may come before the relay holds the reservation.
  bool reserved() const {
    return reservation_becomes(unreachable, relay_reservation::state::active) &&
           eventually([&] { return relay.snapshot().reservations_held == 1u; });
  }
};

TEST(link_relay, a_peer_behind_nat_is_reached_through_its_relay_end_to_end) {
  relayed_swarm s;
  ASSERT_TRUE(s.reserved());
  std::string error;
  auto tunnel =
    s.dialer.open_relayed_tunnel("127.0.0.1", s.relay.public_port(), s.unreachable_id(), error);
  ASSERT_TRUE(tunnel) << error;
  int fd = connect_to(*tunnel);
  ASSERT_GE(fd, 0);
  std::vector<uint8_t> message;
  EXPECT_EQ(echo_through(fd, 3 << 20, 7, message), message);
  ::close(fd);
  EXPECT_EQ(s.unreachable_caf.accepted(), 1);
  // The relay spliced one circuit, carried the sealed stream both ways, and its own CAF side
  // never saw a byte of it.
  EXPECT_EQ(s.relay_caf.accepted(), 0);
  auto relay = s.relay.snapshot();
  EXPECT_EQ(relay.circuits_relayed, 1u);
  EXPECT_GT(relay.relayed_bytes, 2 * message.size());
  // The handshake ran end to end: the dialer admitted the unreachable peer's key.
  EXPECT_EQ(s.dialer.snapshot().handshakes_ok, 1u);
}

TEST(link_relay, strangers_and_peers_without_a_reservation_get_no_circuit) {
  relayed_swarm s;
  ASSERT_TRUE(s.reserved());
  link_gateway stranger(peer_key::generate(), admission_policy::of_swarm(swarm_key(2)),
                        fast_options());
  const double wrong_swarm = failures("wrong_swarm_key");
  const double no_reservation = failures("no_reservation");
  std::string error;
  auto from_stranger =
    stranger.open_relayed_tunnel("127.0.0.1", s.relay.public_port(), s.unreachable_id(), error);
  ASSERT_TRUE(from_stranger) << error;
  int fd = connect_to(*from_stranger);
  ASSERT_GE(fd, 0);
  EXPECT_TRUE(closed_within(fd, 5s));
  ::close(fd);
  EXPECT_GE(failures("wrong_swarm_key"), wrong_swarm + 1);

  const std::string nobody(32, 'a');
  auto to_nobody = s.dialer.open_relayed_tunnel("127.0.0.1", s.relay.public_port(), nobody, error);
  ASSERT_TRUE(to_nobody) << error;
  fd = connect_to(*to_nobody);
  ASSERT_GE(fd, 0);
  EXPECT_TRUE(closed_within(fd, 5s));
  ::close(fd);
  EXPECT_GE(failures("no_reservation"), no_reservation + 1);
  EXPECT_EQ(s.unreachable_caf.accepted(), 0);
  EXPECT_EQ(s.relay.snapshot().circuits_relayed, 0u);

  EXPECT_FALSE(
    s.dialer.open_relayed_tunnel("127.0.0.1", s.relay.public_port(), "not-an-id", error));
  EXPECT_NE(error.find("not a peer id"), std::string::npos) << error;
}

TEST(link_relay, a_reservation_whose_relay_stops_is_reported_lost) {
  echo_server caf;
  auto relay = std::make_unique<link_gateway>(
    peer_key::generate(), admission_policy::of_swarm(swarm_key(1)), fast_options());
  link_gateway unreachable(peer_key::generate(), admission_policy::of_swarm(swarm_key(1)),
                           fast_options());
  unreachable.set_local_port(caf.port());
  unreachable.reserve("127.0.0.1", relay->public_port());
  ASSERT_TRUE(reservation_becomes(unreachable, relay_reservation::state::active));
  relay.reset();
  EXPECT_TRUE(reservation_becomes(unreachable, relay_reservation::state::lost));
  // A relay nobody listens at is lost too, and released reservations are forgotten.
  unreachable.release(unreachable.reservations()[0].relay);
  unreachable.reserve("127.0.0.1", closed_port());
  EXPECT_TRUE(reservation_becomes(unreachable, relay_reservation::state::lost));
}

TEST(link_relay, a_probe_learns_its_observed_address_and_whether_a_dial_back_arrives) {
  link_gateway asked(peer_key::generate(), admission_policy::of_swarm(swarm_key(1)),
                     fast_options());
  link_gateway prober(peer_key::generate(), admission_policy::of_swarm(swarm_key(1)),
                      fast_options());
  auto reachable = prober.probe("127.0.0.1", asked.public_port(), 5s);
  EXPECT_TRUE(reachable.answered) << reachable.error;
  EXPECT_EQ(reachable.observed_host, "127.0.0.1");
  EXPECT_NE(reachable.observed_port, 0);
  EXPECT_TRUE(reachable.reachable);

  // Behind NAT, the dial-back finds nothing listening: answered, not reachable.
  auto unreachable = prober.probe("127.0.0.1", asked.public_port(), 5s, closed_port());
  EXPECT_TRUE(unreachable.answered) << unreachable.error;
  EXPECT_EQ(unreachable.observed_host, "127.0.0.1");
  EXPECT_FALSE(unreachable.reachable);
}

TEST(link_relay, a_stranger_gets_no_answer_to_a_probe_and_nothing_answers_a_closed_port) {
  link_gateway asked(peer_key::generate(), admission_policy::of_swarm(swarm_key(1)),
                     fast_options());
  link_gateway stranger(peer_key::generate(), admission_policy::of_swarm(swarm_key(2)),
                        fast_options());
  auto refused = stranger.probe("127.0.0.1", asked.public_port(), 5s);
  EXPECT_FALSE(refused.answered);
  EXPECT_FALSE(refused.reachable);
  EXPECT_FALSE(refused.error.empty());
  auto nobody = stranger.probe("127.0.0.1", closed_port(), 5s);
  EXPECT_FALSE(nobody.answered);
  EXPECT_FALSE(nobody.error.empty());
}

// Discovery through initial peers: the address they see, whether they could connect back, and
// the peers that answered (an unreachable peer's first relays); strangers' ports are skipped.
TEST(reachability, initial_peers_tell_the_address_and_whether_they_connect_back) {
  link_gateway first(peer_key::generate(), admission_policy::of_swarm(swarm_key(1)),
                     fast_options());
  link_gateway stranger(peer_key::generate(), admission_policy::of_swarm(swarm_key(2)),
                        fast_options());
  link_gateway joiner(peer_key::generate(), admission_policy::of_swarm(swarm_key(1)),
                      fast_options());
  const auto first_address = "127.0.0.1:" + std::to_string(first.public_port());
  const std::vector<std::string> initial{
    "127.0.0.1:" + std::to_string(stranger.public_port()), "not an address", first_address};
  auto found = discover_reachability(joiner, initial, "auto", 3s);
  EXPECT_EQ(found.observed_hosts, std::vector<std::string>{"127.0.0.1"});
  EXPECT_TRUE(found.reachable);
  EXPECT_EQ(found.relay_candidates, std::vector<std::string>{first_address});
  EXPECT_NE(found.summary.find("1 of 1 could connect back"), std::string::npos) << found.summary;

  // "no": it stays unreachable whatever the dial-backs say, and still learns its address.
  auto told = discover_reachability(joiner, initial, "no", 3s);
  EXPECT_FALSE(told.reachable);
  EXPECT_EQ(told.observed_hosts, std::vector<std::string>{"127.0.0.1"});

  // Nobody answers: assumed reachable (a swarm's first peers must be), and the log says why.
  auto alone = discover_reachability(joiner, {"127.0.0.1:" + std::to_string(closed_port())},
                                     "auto", 3s);
  EXPECT_TRUE(alone.reachable);
  EXPECT_TRUE(alone.observed_hosts.empty());
  EXPECT_TRUE(alone.relay_candidates.empty());
  EXPECT_NE(alone.summary.find("no initial peer answered"), std::string::npos) << alone.summary;
}

// A peer on IPv4 and IPv6 asks an initial peer at both of its addresses: it learns both of its
// own, each with a dial-back that arrived (the gateways listen on both, on one port).
TEST(reachability, a_dual_stack_peer_learns_its_ipv4_and_its_ipv6_address) {
  auto dual_stack = fast_options();
  dual_stack.listen_hosts = {"127.0.0.1", "::1"};
  link_gateway first(peer_key::generate(), admission_policy::of_swarm(swarm_key(1)), dual_stack);
  link_gateway joiner(peer_key::generate(), admission_policy::of_swarm(swarm_key(1)),
                      dual_stack);
  const auto port = std::to_string(first.public_port());
  auto found = discover_reachability(joiner, {"127.0.0.1:" + port, "[::1]:" + port}, "auto", 3s);
  EXPECT_TRUE(found.reachable) << found.summary;
  EXPECT_EQ(found.observed_hosts, (std::vector<std::string>{"127.0.0.1", "::1"}));
  EXPECT_NE(found.summary.find("127.0.0.1 and ::1; 2 of 2 could connect back"), std::string::npos)
    << found.summary;

  // Listening on IPv4 only, its IPv6 dial-back finds nobody: only the address that works counts.
  auto v4_only = fast_options();
  link_gateway narrow(peer_key::generate(), admission_policy::of_swarm(swarm_key(1)), v4_only);
  auto narrow_found =
    discover_reachability(narrow, {"127.0.0.1:" + port, "[::1]:" + port}, "auto", 3s);
  EXPECT_TRUE(narrow_found.reachable) << narrow_found.summary;
  EXPECT_EQ(narrow_found.observed_hosts, std::vector<std::string>{"127.0.0.1"});
}

} // namespace
} // namespace ddactor
