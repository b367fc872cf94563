// The membership actor with real actor systems talking over loopback, several in one process:
// joining, convergence, deaths, clean leaves, restarts, split merges and hostile input. Every
// wait polls the actors' views with a deadline; no test asserts a timing.
#include "actors/membership.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <memory>
#include <set>
#include <thread>

#include "caf/io/all.hpp"

#include "monitoring/ddactor_metrics.hpp"
#include "monitoring/swarm_status.hpp"
#include "runtime/actor_system_setup.hpp"
#include "runtime/actor_system_shutdown.hpp"
#include "runtime/message_types.hpp"
#include "runtime/peer_identity.hpp"
#include "runtime/swarm_view.hpp"

namespace ddactor {
namespace {

using namespace std::chrono_literals;

// Short heartbeats so that a cut connection is noticed within the tests' deadlines.
constexpr network_timing test_network{200ms, 3000ms};
constexpr auto deadline = 8s;

membership_options fast_options(std::vector<std::string> initial_peers) {
  membership_options options;
  options.listen_host = "127.0.0.1";
  options.initial_peers = std::move(initial_peers);
  options.gossip_interval = 100ms;
  options.suspect_after = 1000ms;
  options.remove_after = 3000ms;
  options.connect_timeout = 2000ms;
  options.bootstrap_retry = 300ms;
  options.split_check_every = 5;
  return options;
}

// One peer: its own actor system (as a separate process would have) and membership actor.
struct swarm_node {
  ddactor_system_config config{test_network};
  caf::actor_system system{config};
  detached_actor_guard guard{system, std::chrono::seconds(20)};
  membership_actor membership;
  std::string peer_id;
  uint64_t incarnation = 1;
  uint16_t port = 0;

  swarm_node(std::vector<std::string> initial_peers, std::string id = make_random_peer_id(),
             uint64_t incarnation_number = 1,
             std::function<void(membership_options&)> adjust = {})
    : peer_id(std::move(id)), incarnation(incarnation_number) {
    auto options = fast_options(std::move(initial_peers));
    options.self.info = peer_info{peer_id, "127.0.0.1", 0, "test-swarm", incarnation, true, {}};
    if (adjust)
      adjust(options);
    membership = spawn_membership(system, std::move(options));
    caf::scoped_actor self{system};
    self->request(membership, 5s, caf::get_atom::value, caf::ok_atom::value)
      .receive([&](uint16_t bound) { port = bound; },
               [&](caf::error& err) { ADD_FAILURE() << system.render(err); });
  }

  ~swarm_node() { stop(caf::exit_reason::user_shutdown); }

  /// Stops the membership actor: user_shutdown says goodbye, kill is a crash.
  void stop(caf::exit_reason reason) {
    if (!membership)
      return;
    caf::anon_send_exit(membership, reason);
    membership = nullptr;
  }

  std::string address() const { return "127.0.0.1:" + std::to_string(port); }

  std::vector<swarm_member> view() {
    std::vector<swarm_member> result;
    if (!membership)
      return result;
    caf::scoped_actor self{system};
    self->request(membership, 5s, caf::get_atom::value)
      .receive([&](std::vector<swarm_member>& members) { result = std::move(members); },
               [&](caf::error& err) { ADD_FAILURE() << system.render(err); });
    return result;
  }

  std::set<std::string> view_ids() {
    std::set<std::string> ids;
    for (auto& member : view())
      ids.insert(member.info.peer_id);
    return ids;
  }
};

using node_ptr = std::unique_ptr<swarm_node>;

// An averager that answers every join with an assignment for epoch 7.
averager_remote::behavior_type answering_averager() {
  return {
    [](join_atom, const round_request&) -> caf::result<group_assignment> {
      group_assignment answer;
      answer.epoch = 7;
      return answer;
    },
  };
}

node_ptr start_node(std::vector<std::string> initial_peers = {}) {
  return std::make_unique<swarm_node>(std::move(initial_peers));
}

bool eventually(const std::function<bool()>& condition) {
  auto until = std::chrono::steady_clock::now() + deadline;
  while (std::chrono::steady_clock::now() < until) {
    if (condition())
      return true;
    std::this_thread::sleep_for(20ms);
  }
  return condition();
}

std::set<std::string> ids_of(const std::vector<swarm_node*>& nodes) {
  std::set<std::string> ids;
  for (auto* node : nodes)
    ids.insert(node->peer_id);
  return ids;
}

// Every node's view is exactly `nodes`.
bool converged(const std::vector<swarm_node*>& nodes) {
  auto expected = ids_of(nodes);
  for (auto* node : nodes)
    if (node->view_ids() != expected)
      return false;
  return true;
}

std::string describe_views(const std::vector<swarm_node*>& nodes) {
  std::string text;
  for (auto* node : nodes) {
    text += short_peer_id(node->peer_id) + " sees:";
    for (auto& id : node->view_ids()) {
      text += ' ';
      text += short_peer_id(id);
    }
    text += "\n";
  }
  return text;
}

double counter_value(const std::string& name, const std::vector<std::string>& labels = {}) {
  swarm_metrics metrics{global_metrics()};
  if (name == "splits")
    return metrics.splits.value();
  if (name == "suspected")
    return metrics.suspected.value();
  if (name == "left")
    return metrics.left.with(labels).value();
  if (name == "rejected")
    return metrics.rejected.with(labels).value();
  return metrics.joined.value();
}

TEST(membership_address, parses_host_and_port) {
  EXPECT_EQ(parse_peer_address("127.0.0.1:4000"), std::make_pair(std::string("127.0.0.1"),
                                                                 uint16_t{4000}));
  EXPECT_EQ(parse_peer_address("peer.example.org:65535"),
            std::make_pair(std::string("peer.example.org"), uint16_t{65535}));
  EXPECT_EQ(parse_peer_address("[::1]:7"), std::make_pair(std::string("::1"), uint16_t{7}));
  for (const char* bad : {"", "host", "host:", ":4000", "host:0", "host:65536", "host:12x",
                          "::1:4000", "[]:4000", "[::1:4000", "host:-1", "host:123456"})
    EXPECT_FALSE(parse_peer_address(bad)) << bad;
}

// Peers that require proofs admit a hello only when its id is its key's: a peer signing with a
// key whose id is not the one it claims (an admitted peer posing as another) is refused and
// counted; one claiming its own key's id joins.
TEST(membership, a_hello_must_prove_its_id_with_the_key_behind_it) {
  auto requiring = [](const peer_key& key) {
    return [key](membership_options& o) {
      o.key = key;
      o.require_proof = true;
    };
  };
  auto a_key = peer_key::generate();
  auto a = std::make_unique<swarm_node>(std::vector<std::string>{}, peer_id_of(a_key.public_part()),
                                        1, requiring(a_key));
  auto& refused = swarm_metrics(global_metrics()).rejected.with({"bad_signature"});
  const double before = refused.value();
  // Poses as a third peer: its key's id is not the id it claims.
  auto impostor_key = peer_key::generate();
  auto impostor = std::make_unique<swarm_node>(std::vector<std::string>{a->address()},
                                               peer_id_of(peer_key::generate().public_part()), 1,
                                               requiring(impostor_key));
  auto b_key = peer_key::generate();
  auto b = std::make_unique<swarm_node>(std::vector<std::string>{a->address()},
                                        peer_id_of(b_key.public_part()), 1, requiring(b_key));
  EXPECT_TRUE(eventually([&] { return a->view_ids().contains(b->peer_id); }));
  EXPECT_TRUE(eventually([&] { return refused.value() > before; }));
  EXPECT_FALSE(a->view_ids().contains(impostor->peer_id));
  EXPECT_FALSE(b->view_ids().contains(impostor->peer_id));
}

TEST(membership, alone_it_publishes_and_sees_itself) {
  auto a = start_node();
  ASSERT_NE(a->port, 0);
  auto view = a->view();
  ASSERT_EQ(view.size(), 1u);
  EXPECT_EQ(view[0].info.peer_id, a->peer_id);
  EXPECT_EQ(view[0].info.port, a->port);
  EXPECT_EQ(view[0].info.swarm_id, "test-swarm");
  EXPECT_EQ(view[0].membership, a->membership);
}

TEST(membership, peers_joining_through_one_bootstrap_peer_converge) {
  auto joined_before = counter_value("joined");
  auto a = start_node();
  std::vector<node_ptr> others;
  for (int i = 0; i < 4; ++i)
    others.push_back(start_node({a->address()}));
  std::vector<swarm_node*> all{a.get()};
  for (auto& node : others)
    all.push_back(node.get());
  ASSERT_TRUE(eventually([&] { return converged(all); })) << describe_views(all);
  // Everyone holds everyone's own handle, learned directly from that peer.
  for (auto* node : all)
    for (auto& member : node->view()) {
      auto owner = std::find_if(all.begin(), all.end(),
                                [&](swarm_node* n) { return n->peer_id == member.info.peer_id; });
      ASSERT_NE(owner, all.end());
      EXPECT_EQ(member.membership, (*owner)->membership);
      EXPECT_EQ(member.info.port, (*owner)->port);
    }
  // 5 peers, each admitting the 4 others once.
  EXPECT_GE(counter_value("joined") - joined_before, 20.0);
}

TEST(membership, subscribers_get_the_view_now_and_after_each_change) {
  auto a = start_node();
  caf::scoped_actor subscriber{a->system};
  subscriber->send(a->membership, subscribe_atom_v, caf::actor_cast<view_subscriber>(subscriber));
  std::size_t last_size = 0;
  subscriber->receive([&](view_atom, std::vector<swarm_member>& view) { last_size = view.size(); },
                      caf::after(5s) >> [] { FAIL() << "no initial view"; });
  EXPECT_EQ(last_size, 1u);
  auto b = start_node({a->address()});
  auto until = std::chrono::steady_clock::now() + deadline;
  while (last_size != 2 && std::chrono::steady_clock::now() < until)
    subscriber->receive(
      [&](view_atom, std::vector<swarm_member>& view) { last_size = view.size(); },
      caf::after(1s) >> [] {});
  EXPECT_EQ(last_size, 2u);
  b.reset();  // clean shutdown: a's view shrinks and the subscriber hears of it
  until = std::chrono::steady_clock::now() + deadline;
  while (last_size != 1 && std::chrono::steady_clock::now() < until)
    subscriber->receive(
      [&](view_atom, std::vector<swarm_member>& view) { last_size = view.size(); },
      caf::after(1s) >> [] {});
  EXPECT_EQ(last_size, 1u);
}

TEST(membership, new_local_handles_reach_the_other_peers_directly) {
  auto a = start_node();
  auto b = start_node({a->address()});
  ASSERT_TRUE(eventually([&] { return converged({a.get(), b.get()}); }));
  // b's averager is (re)started: b announces the new handle, a takes it from b itself.
  averager_remote averager = b->system.spawn(answering_averager);
  caf::scoped_actor local{b->system};  // attach is local control: from b's own process
  local->send(b->membership, attach_atom_v, progress_remote{}, averager, state_server_remote{});
  auto a_has_it = [&] {
    for (auto& member : a->view())
      if (member.info.peer_id == b->peer_id)
        return member.averager == averager && !member.progress;
    return false;
  };
  EXPECT_TRUE(eventually(a_has_it));
  for (auto& member : b->view()) {
    if (member.info.peer_id == b->peer_id) {
      EXPECT_EQ(member.averager, averager);
    }
  }
  // The handle works across the connection.
  caf::scoped_actor self{a->system};
  for (auto& member : a->view()) {
    if (member.info.peer_id == b->peer_id)
      self->request(member.averager, 5s, join_atom_v, round_request{})
        .receive([](group_assignment& answer) { EXPECT_EQ(answer.epoch, 7); },
                 [&](caf::error& err) { ADD_FAILURE() << a->system.render(err); });
  }
  caf::anon_send_exit(averager, caf::exit_reason::user_shutdown);
}

TEST(membership, a_killed_member_is_removed_at_once_and_a_leaving_one_too) {
  auto died_before = counter_value("left", {"died"});
  auto left_before = counter_value("left", {"left"});
  auto a = start_node();
  auto b = start_node({a->address()});
  auto c = start_node({a->address()});
  ASSERT_TRUE(eventually([&] { return converged({a.get(), b.get(), c.get()}); }))
    << describe_views({a.get(), b.get(), c.get()});
  // A crash: no goodbye, the monitors fire.
  c->stop(caf::exit_reason::kill);
  EXPECT_TRUE(eventually([&] { return converged({a.get(), b.get()}); }))
    << describe_views({a.get(), b.get()});
  EXPECT_GE(counter_value("left", {"died"}) - died_before, 2.0);
  // A clean shutdown of a whole actor system: it says goodbye first.
  b.reset();
  EXPECT_TRUE(eventually([&] { return converged({a.get()}); })) << describe_views({a.get()});
  EXPECT_GE(counter_value("left", {"left"}) + counter_value("left", {"died"}) - left_before -
              died_before,
            3.0);
  c.reset();
}

TEST(membership, a_peer_joins_through_a_non_first_peer_and_the_bootstrap_peer_may_leave) {
  auto a = start_node();
  auto b = start_node({a->address()});
  auto c = start_node({b->address()});
  ASSERT_TRUE(eventually([&] { return converged({a.get(), b.get(), c.get()}); }))
    << describe_views({a.get(), b.get(), c.get()});
  // The first peer leaves; the others still know each other and accept newcomers.
  a.reset();
  ASSERT_TRUE(eventually([&] { return converged({b.get(), c.get()}); }))
    << describe_views({b.get(), c.get()});
  auto d = start_node({c->address()});
  EXPECT_TRUE(eventually([&] { return converged({b.get(), c.get(), d.get()}); }))
    << describe_views({b.get(), c.get(), d.get()});
}

TEST(membership, a_restarted_peer_replaces_its_old_entry) {
  auto a = start_node();
  auto c = start_node({a->address()});
  auto id = make_random_peer_id();
  auto old_b = std::make_unique<swarm_node>(std::vector<std::string>{a->address()}, id, 1);
  ASSERT_TRUE(eventually([&] { return converged({a.get(), c.get(), old_b.get()}); }))
    << describe_views({a.get(), c.get(), old_b.get()});
  // The new incarnation comes up while the old one is still reachable (it hangs, say).
  auto new_b = std::make_unique<swarm_node>(std::vector<std::string>{a->address()}, id, 2);
  auto sees_new_b = [&](swarm_node& node) {
    for (auto& member : node.view())
      if (member.info.peer_id == id)
        return member.info.incarnation == 2 && member.membership == new_b->membership &&
               node.view().size() == 3;
    return false;
  };
  EXPECT_TRUE(eventually([&] { return sees_new_b(*a) && sees_new_b(*c); }))
    << describe_views({a.get(), c.get(), new_b.get()});
  EXPECT_TRUE(eventually([&] { return converged({a.get(), c.get(), new_b.get()}); }))
    << describe_views({a.get(), c.get(), new_b.get()});
  // The old process dies: the entry of the new one stays.
  old_b->stop(caf::exit_reason::kill);
  old_b.reset();
  std::this_thread::sleep_for(300ms);
  EXPECT_TRUE(sees_new_b(*a));
  EXPECT_TRUE(sees_new_b(*c));
}

TEST(membership, two_groups_linked_by_a_new_peer_merge_and_the_split_is_counted) {
  auto splits_before = counter_value("splits");
  auto a = start_node();
  auto b = start_node({a->address()});
  auto c = start_node();
  auto d = start_node({c->address()});
  ASSERT_TRUE(eventually([&] { return converged({a.get(), b.get()}); }));
  ASSERT_TRUE(eventually([&] { return converged({c.get(), d.get()}); }));
  auto x = start_node({a->address(), c->address()});
  std::vector<swarm_node*> all{a.get(), b.get(), c.get(), d.get(), x.get()};
  EXPECT_TRUE(eventually([&] { return converged(all); })) << describe_views(all);
  EXPECT_GE(counter_value("splits") - splits_before, 1.0);
}

TEST(membership, a_peer_retries_its_initial_peers_until_one_is_up) {
  // b is configured with a's future address; a comes up later on that fixed port.
  uint16_t port = 0;
  {
    auto probe = start_node();
    port = probe->port;
  }
  auto address = "127.0.0.1:" + std::to_string(port);
  auto b = start_node({address});
  std::this_thread::sleep_for(500ms);
  EXPECT_EQ(b->view().size(), 1u);
  auto a = std::make_unique<swarm_node>(std::vector<std::string>{}, make_random_peer_id(), 1,
                                        [&](membership_options& o) { o.listen_port = port; });
  ASSERT_EQ(a->port, port);
  EXPECT_TRUE(eventually([&] { return converged({a.get(), b.get()}); }))
    << describe_views({a.get(), b.get()});
}

TEST(membership, its_own_address_among_the_initial_peers_is_skipped) {
  // Every peer of a swarm may share one list of initial peers, itself included.
  uint16_t port = 0;
  {
    auto probe = start_node();
    port = probe->port;
  }
  auto address = "127.0.0.1:" + std::to_string(port);
  auto a = std::make_unique<swarm_node>(std::vector<std::string>{address}, make_random_peer_id(),
                                        1, [&](membership_options& o) { o.listen_port = port; });
  auto b = start_node({address});
  EXPECT_TRUE(eventually([&] { return converged({a.get(), b.get()}); }))
    << describe_views({a.get(), b.get()});
  std::this_thread::sleep_for(300ms);
  EXPECT_EQ(a->view_ids(), ids_of({a.get(), b.get()}));
}

TEST(membership, a_taken_port_is_a_clear_fatal_error) {
  auto a = start_node();
  ddactor_system_config config{test_network};
  caf::actor_system system{config};
  detached_actor_guard guard{system, std::chrono::seconds(20)};
  auto options = fast_options({});
  options.self.info = peer_info{make_random_peer_id(), "127.0.0.1", 0, "test-swarm", 1, true, {}};
  options.listen_port = a->port;
  auto membership = spawn_membership(system, std::move(options));
  caf::scoped_actor self{system};
  self->monitor(membership);
  self->request(membership, 5s, caf::get_atom::value, caf::ok_atom::value)
    .receive([&](uint16_t) { FAIL() << "bound a taken port"; },
             [&](caf::error& err) {
               // The actor may have failed (and gone) before this request reached it.
               if (err != caf::sec::request_receiver_down) {
                 EXPECT_EQ(err, errc::invalid_config) << system.render(err);
               }
             });
  self->receive(
    [&](caf::down_msg& dm) {
      EXPECT_EQ(dm.reason, errc::invalid_config) << system.render(dm.reason);
      EXPECT_NE(system.render(dm.reason).find(std::to_string(a->port)), std::string::npos)
        << system.render(dm.reason);
    },
    caf::after(5s) >> [] { FAIL() << "the actor did not quit"; });
}

// A "peer" in another process that says hello to `node` and then never gossips: its connection
// stays up, it is just silent.
struct silent_member {
  ddactor_system_config config{test_network};
  caf::actor_system system{config};
  detached_actor_guard guard{system, std::chrono::seconds(20)};
  caf::scoped_actor self{system};
  membership_remote remote;  // node's membership
  swarm_member fake;

  explicit silent_member(const swarm_node& node) {
    auto found = system.middleman().remote_actor<membership_remote>("127.0.0.1", node.port);
    if (!found) {
      ADD_FAILURE() << system.render(found.error());
      return;
    }
    remote = *found;
    fake.info = peer_info{make_random_peer_id(), "127.0.0.1", 9, "test-swarm", 1, true, {}};
    fake.membership = caf::actor_cast<membership_remote>(self);
    self->request(remote, 5s, hello_atom_v, fake, true)
      .receive([&](swarm_member& them, std::vector<peer_info>& known) {
                 EXPECT_EQ(them.info.peer_id, node.peer_id);
                 EXPECT_TRUE(known.empty());
               },
               [&](caf::error& err) { ADD_FAILURE() << system.render(err); });
  }
};

// `ddactor status` on another node: a fresh actor system connects to the published membership
// actor and asks (status); the answer is plain JSON text with every member, never a handle.
TEST(membership, answers_a_status_request_from_another_node_with_text_only) {
  auto board = std::make_shared<swarm_status_board>([] { return std::string("training"); });
  auto a = std::make_unique<swarm_node>(std::vector<std::string>{}, make_random_peer_id(), 1,
                                        [&](membership_options& o) { o.status_board = board; });
  auto b = start_node({a->address()});
  auto without_board = start_node();
  ASSERT_TRUE(eventually([&] { return converged({a.get(), b.get()}); }));

  ddactor_system_config config{test_network};
  caf::actor_system asking{config};
  detached_actor_guard guard{asking, std::chrono::seconds(20)};
  auto ask = [&](uint16_t port, std::string& text, caf::error& failure) {
    caf::scoped_actor self{asking};
    caf::actor remote;
    self->request(asking.middleman().actor_handle(), 5s, caf::connect_atom::value,
                  std::string("127.0.0.1"), port)
      .receive(
        [&](const caf::node_id&, caf::strong_actor_ptr& published, const std::set<std::string>&) {
          remote = caf::actor_cast<caf::actor>(published);
        },
        [&](caf::error& err) { failure = std::move(err); });
    if (!remote)
      return;
    self->request(remote, 5s, status_atom_v)
      .receive([&](std::string& answer) { text = std::move(answer); },
               [&](caf::error& err) { failure = std::move(err); });
  };

  // The board's view follows membership's (its tick reports last-heard times).
  swarm_status status;
  ASSERT_TRUE(eventually([&] {
    std::string text;
    caf::error failure;
    ask(a->port, text, failure);
    if (failure || text.empty())
      return false;
    status = parse_swarm_status_json(text);
    return status.peers.size() == 2 && status.peers[0].last_seen_seconds.has_value() !=
                                          status.peers[1].last_seen_seconds.has_value();
  }));
  EXPECT_EQ(status.peer_id, a->peer_id);
  EXPECT_EQ(status.address, a->address());
  EXPECT_EQ(status.swarm_id, "test-swarm");
  EXPECT_EQ(status.activity, "training");
  for (const auto& peer : status.peers) {
    if (peer.peer_id == a->peer_id) {
      EXPECT_TRUE(peer.is_self);
      EXPECT_EQ(peer.reachability, peer_reachability::unknown);
    } else {
      EXPECT_EQ(peer.peer_id, b->peer_id);
      EXPECT_EQ(peer.address, b->address());
      EXPECT_EQ(peer.reachability, peer_reachability::reachable);
      EXPECT_LT(peer.last_seen_seconds.value(), 5.0);
    }
  }

  // A membership actor without a board says so, and stays up.
  std::string text;
  caf::error failure;
  ask(without_board->port, text, failure);
  EXPECT_TRUE(text.empty());
  EXPECT_EQ(failure, errc::invalid_message) << asking.render(failure);
  EXPECT_EQ(without_board->view().size(), 1u);
}

// A node flooding hellos' cheaper cousin, gossip, is cut to the rate limit before any work, and
// the peer still admits an honest newcomer meanwhile.
TEST(membership, a_node_flooding_gossip_is_rate_limited_and_the_peer_stays_responsive) {
  auto a = start_node();
  auto& limited = swarm_metrics(global_metrics()).rejected.with({"rate_limited"});
  const double before = limited.value();
  ddactor_system_config config{test_network};
  caf::actor_system flooding{config};
  detached_actor_guard guard{flooding, std::chrono::seconds(20)};
  caf::scoped_actor self{flooding};
  caf::actor remote;
  self->request(flooding.middleman().actor_handle(), 5s, caf::connect_atom::value,
                std::string("127.0.0.1"), a->port)
    .receive(
      [&](const caf::node_id&, caf::strong_actor_ptr& published, const std::set<std::string>&) {
        remote = caf::actor_cast<caf::actor>(published);
      },
      [&](caf::error& err) { ADD_FAILURE() << flooding.render(err); });
  ASSERT_TRUE(remote);
  peer_info fake{make_random_peer_id(), "127.0.0.1", 1, "test-swarm", 1, true, {}};
  constexpr int flood = 3000;
  for (int i = 0; i < flood; ++i)
    self->send(remote, gossip_atom_v, fake, std::vector<peer_info>{});
  auto b = start_node({a->address()});
  EXPECT_TRUE(eventually([&] { return converged({a.get(), b.get()}); }));
  // 100 ms gossip: 100 per second with bursts of 200 pass; the rest of the flood is refused.
  EXPECT_TRUE(eventually([&] { return limited.value() - before >= flood / 2; }))
    << limited.value() - before;
}

TEST(membership, a_silent_member_is_suspected_then_removed) {
  auto suspected_before = counter_value("suspected");
  auto timeouts_before = counter_value("left", {"timeout"});
  auto a = start_node();
  silent_member silent(*a);
  EXPECT_EQ(a->view().size(), 2u);
  EXPECT_TRUE(eventually([&] { return counter_value("suspected") > suspected_before; }));
  EXPECT_TRUE(eventually([&] { return a->view().size() == 1u; }));
  EXPECT_GE(counter_value("left", {"timeout"}) - timeouts_before, 1.0);
}

// Averaging groups vouch for members whose chunks arrive (their heartbeats may wait behind
// those chunks); only notes from this process count, so a remote peer cannot keep a dead one in.
TEST(membership, chunks_from_a_silent_member_keep_it_in_but_remote_notes_do_not) {
  auto a = start_node();
  silent_member silent(*a);
  ASSERT_EQ(a->view().size(), 2u);
  // Longer than remove_after (3 s), with a local note every 200 ms: it stays.
  caf::scoped_actor group{a->system};
  for (int i = 0; i < 20; ++i) {
    group->send(a->membership, alive_atom_v, silent.fake.info.peer_id);
    std::this_thread::sleep_for(200ms);
  }
  EXPECT_EQ(a->view().size(), 2u);
  // Notes from another process do not count (it sends them past the remote interface): it is
  // removed for its silence.
  auto removed = eventually([&] {
    silent.self->send(caf::actor_cast<caf::actor>(silent.remote), alive_atom_v,
                      silent.fake.info.peer_id);
    return a->view().size() == 1u;
  });
  EXPECT_TRUE(removed);
}

TEST(membership, malformed_messages_are_rejected_counted_and_survived) {
  auto a = start_node();
  ddactor_system_config config{test_network};
  caf::actor_system system{config};
  detached_actor_guard guard{system, std::chrono::seconds(20)};
  auto remote = system.middleman().remote_actor<membership_remote>("127.0.0.1", a->port);
  ASSERT_TRUE(remote) << system.render(remote.error());
  caf::scoped_actor client{system};
  auto valid_info = peer_info{make_random_peer_id(), "127.0.0.1", 9, "test-swarm", 1, true, {}};

  auto expect_rejected_hello = [&](swarm_member member, const std::string& reason) {
    auto before = counter_value("rejected", {reason});
    client->request(*remote, 5s, hello_atom_v, member, true)
      .receive([&](swarm_member&, std::vector<peer_info>&) { ADD_FAILURE() << reason; },
               [&](caf::error& err) { EXPECT_EQ(err, errc::invalid_message) << reason; });
    EXPECT_EQ(counter_value("rejected", {reason}) - before, 1.0) << reason;
  };
  const auto client_handle = caf::actor_cast<membership_remote>(client);
  swarm_member bad_id{valid_info, client_handle, {}, {}, {}, {}, {}};
  bad_id.info.peer_id = "not-a-peer-id";
  expect_rejected_hello(bad_id, "bad_peer_id");
  swarm_member empty_host{valid_info, client_handle, {}, {}, {}, {}, {}};
  empty_host.info.host.clear();
  expect_rejected_hello(empty_host, "bad_host");
  swarm_member no_port{valid_info, client_handle, {}, {}, {}, {}, {}};
  no_port.info.port = 0;
  expect_rejected_hello(no_port, "bad_port");
  swarm_member no_handle{valid_info, {}, {}, {}, {}, {}, {}};
  expect_rejected_hello(no_handle, "missing_handle");
  // Handles of another node than the sender's: second-hand, refused.
  swarm_member second_hand{valid_info, a->membership, {}, {}, {}, {}, {}};
  expect_rejected_hello(second_hand, "wrong_sender");
  swarm_member impostor{valid_info, client_handle, {}, {}, {}, {}, {}};
  impostor.info.peer_id = a->peer_id;
  expect_rejected_hello(impostor, "own_id");

  auto expect_rejected_gossip = [&](peer_info from, std::vector<peer_info> known,
                                    const std::string& reason) {
    auto before = counter_value("rejected", {reason});
    client->send(*remote, gossip_atom_v, from, known);
    EXPECT_TRUE(eventually([&] { return counter_value("rejected", {reason}) > before; }))
      << reason;
  };
  auto no_host = valid_info;
  no_host.host.clear();
  expect_rejected_gossip(no_host, {}, "bad_host");
  auto bad_entry = valid_info;
  bad_entry.peer_id = std::string(32, 'Z');
  expect_rejected_gossip(valid_info, {bad_entry}, "bad_peer_id");
  expect_rejected_gossip(valid_info, std::vector<peer_info>(max_known_peers + 1, valid_info),
                         "too_many_peers");
  auto long_swarm = valid_info;
  long_swarm.swarm_id = std::string(1000, 's');
  expect_rejected_gossip(long_swarm, {}, "bad_swarm_id");
  // A leave in another peer's name from a node that is not that peer.
  auto b = start_node({a->address()});
  ASSERT_TRUE(eventually([&] { return converged({a.get(), b.get()}); }));
  auto before = counter_value("rejected", {"wrong_sender"});
  client->send(*remote, leave_atom_v, b->peer_id);
  EXPECT_TRUE(eventually([&] { return counter_value("rejected", {"wrong_sender"}) > before; }));
  EXPECT_EQ(a->view().size(), 2u);
  client->send(*remote, leave_atom_v, std::string("garbage"));

  // Still alive and answering, with nothing of the garbage in its view.
  auto view = a->view();
  ASSERT_EQ(view.size(), 2u);
  for (auto& member : view)
    EXPECT_TRUE(member.info.peer_id == a->peer_id || member.info.peer_id == b->peer_id);
}

TEST(membership, local_control_from_another_node_is_refused) {
  auto a = start_node();
  auto b = start_node({a->address()});
  ASSERT_TRUE(eventually([&] { return converged({a.get(), b.get()}); }));
  // A hostile node is not bound by the remote interface its handle has: it sends anything.
  caf::actor b_membership;
  for (auto& member : a->view())
    if (member.info.peer_id == b->peer_id)
      b_membership = caf::actor_cast<caf::actor>(member.membership);
  ASSERT_TRUE(b_membership);
  auto& refused = swarm_metrics(global_metrics()).remote_control_refused.with({"membership"});
  const auto before = refused.value();
  caf::scoped_actor stranger{a->system};  // another node, holding b's handle from the hello
  // The view with every member's handles is for b's own actors only...
  bool got_view = false;
  stranger->request(b_membership, 5s, caf::get_atom_v)
    .receive([&](std::vector<swarm_member>&) { got_view = true; },
             [&](caf::error&) {});
  EXPECT_FALSE(got_view);
  // ...and so is tick. Attach and subscribe carry handles of local interfaces, which are no
  // message types of the wire (not in the type-ID block): no node encodes or decodes them, so
  // they never reach b. b's own entry keeps its handles, and the stranger gets no view.
  averager_remote intruder = a->system.spawn(answering_averager);
  stranger->send(b_membership, attach_atom_v, progress_remote{}, intruder, state_server_remote{});
  stranger->send(b_membership, subscribe_atom_v, caf::actor_cast<view_subscriber>(stranger));
  stranger->send(b_membership, tick_atom_v);
  EXPECT_TRUE(eventually([&] { return refused.value() >= before + 2; }));
  for (auto& member : b->view()) {
    if (member.info.peer_id == b->peer_id) {
      EXPECT_NE(member.averager, intruder);
    }
  }
  bool got_a_view = false;
  stranger->receive([&](view_atom, const std::vector<swarm_member>&) { got_a_view = true; },
                    caf::after(500ms) >> [] {});
  EXPECT_FALSE(got_a_view);
  // The remote interface still answers: status is for anyone.
  bool status = false;
  stranger->request(b_membership, 5s, status_atom_v)
    .receive([&](std::string&) { status = true; }, [&](caf::error&) { status = true; });
  EXPECT_TRUE(status);
  caf::anon_send_exit(intruder, caf::exit_reason::user_shutdown);
}

} // namespace
} // namespace ddactor
