#include "runtime/swarm_view.hpp"

#include <gtest/gtest.h>

#include <functional>

namespace ddactor {
namespace {

using namespace std::chrono_literals;
using time_point = swarm_view::time_point;

std::string id_of(char c) { return std::string(32, c); }

peer_info info_of(char c, uint64_t incarnation = 1, uint16_t port = 4000) {
  return peer_info{id_of(c), "127.0.0.1", static_cast<uint16_t>(port + (c - 'a')), "swarm",
                   incarnation, true, {}};
}

swarm_member member_of(char c, uint64_t incarnation = 1) {
  return swarm_member{info_of(c, incarnation), {}, {}, {}, {}, {}, {}};
}

constexpr swarm_view_timing timing{3s, 8s, 30s};

struct swarm_view_test : ::testing::Test {
  time_point t0 = swarm_view::clock::now();
  swarm_view view{member_of('a'), timing};

  std::vector<std::string> ids() const {
    std::vector<std::string> out;
    for (auto& m : view.members())
      out.push_back(m.info.peer_id.substr(0, 1));
    return out;
  }
};

TEST_F(swarm_view_test, starts_with_itself) {
  EXPECT_EQ(view.size(), 1u);
  EXPECT_EQ(view.others(), 0u);
  EXPECT_EQ(ids(), std::vector<std::string>{"a"});
  EXPECT_TRUE(view.other_infos().empty());
}

TEST_F(swarm_view_test, admits_and_sorts_members_with_self_in_place) {
  EXPECT_EQ(view.admit(member_of('c'), t0).outcome, swarm_view::admission::joined);
  EXPECT_EQ(view.admit(member_of('b'), t0).outcome, swarm_view::admission::joined);
  swarm_view other{member_of('d'), timing};
  other.admit(member_of('c'), t0);
  EXPECT_EQ(ids(), (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(other.members().back().info.peer_id, id_of('d'));
  EXPECT_EQ(view.size(), 3u);
  ASSERT_EQ(view.other_infos().size(), 2u);
  EXPECT_EQ(view.other_infos()[0], info_of('b'));
}

TEST_F(swarm_view_test, own_id_is_never_admitted) {
  EXPECT_EQ(view.admit(member_of('a', 7), t0).outcome, swarm_view::admission::stale);
  EXPECT_EQ(view.size(), 1u);
  EXPECT_TRUE(view.learn(std::vector{info_of('a', 9)}, t0).empty());
}

TEST_F(swarm_view_test, same_incarnation_refreshes_and_updates_the_entry) {
  view.admit(member_of('b'), t0);
  auto moved = member_of('b');
  moved.info.host = "10.0.0.2";
  EXPECT_EQ(view.admit(moved, t0 + 1s).outcome, swarm_view::admission::refreshed);
  EXPECT_EQ(view.find(id_of('b'))->info.host, "10.0.0.2");
  EXPECT_EQ(view.size(), 2u);
}

TEST_F(swarm_view_test, higher_incarnation_replaces_and_lower_is_stale) {
  view.admit(member_of('b', 2), t0);
  EXPECT_EQ(view.admit(member_of('b', 1), t0).outcome, swarm_view::admission::stale);
  auto result = view.admit(member_of('b', 3), t0);
  EXPECT_EQ(result.outcome, swarm_view::admission::replaced);
  ASSERT_TRUE(result.previous);
  EXPECT_EQ(result.previous->info.incarnation, 2u);
  EXPECT_EQ(view.find(id_of('b'))->info.incarnation, 3u);
  EXPECT_EQ(view.size(), 2u);
  // Gossip about the replaced incarnation does not bring it back.
  EXPECT_TRUE(view.learn(std::vector{info_of('b', 2)}, t0).empty());
}

TEST_F(swarm_view_test, removal_tombstones_the_incarnation_until_it_expires) {
  view.admit(member_of('b', 4), t0);
  ASSERT_TRUE(view.remove(id_of('b'), t0));
  EXPECT_FALSE(view.remove(id_of('b'), t0));
  EXPECT_EQ(view.size(), 1u);
  EXPECT_TRUE(view.is_tombstoned(id_of('b'), 4, t0));
  EXPECT_TRUE(view.learn(std::vector{info_of('b', 4)}, t0 + 1s).empty());
  EXPECT_TRUE(view.learn(std::vector{info_of('b', 3)}, t0 + 1s).empty());
  // A restarted peer (higher incarnation) is a candidate at once.
  EXPECT_EQ(view.learn(std::vector{info_of('b', 5)}, t0 + 1s).size(), 1u);
  view.forget_candidate(id_of('b'));
  // After the tombstone's time the same incarnation may be learned again.
  view.check_liveness(t0 + timing.tombstone_ttl + 1s);
  EXPECT_FALSE(view.is_tombstoned(id_of('b'), 4, t0 + timing.tombstone_ttl + 1s));
  EXPECT_EQ(view.learn(std::vector{info_of('b', 4)}, t0 + timing.tombstone_ttl + 1s).size(), 1u);
}

TEST_F(swarm_view_test, direct_contact_overrides_a_tombstone_of_the_same_incarnation) {
  view.admit(member_of('b', 4), t0);
  view.remove(id_of('b'), t0);
  EXPECT_EQ(view.admit(member_of('b', 4), t0 + 1s).outcome, swarm_view::admission::joined);
  view.remove(id_of('b'), t0 + 2s);
  // ... but not of an older incarnation: that is a zombie of the past.
  EXPECT_EQ(view.admit(member_of('b', 3), t0 + 3s).outcome, swarm_view::admission::stale);
}

TEST_F(swarm_view_test, learn_skips_known_and_reports_each_candidate_once) {
  view.admit(member_of('b', 2), t0);
  std::vector known{info_of('b', 2), info_of('b', 1), info_of('c'), info_of('d'), info_of('a')};
  auto fresh = view.learn(known, t0);
  ASSERT_EQ(fresh.size(), 2u);
  EXPECT_EQ(fresh[0].peer_id, id_of('c'));
  EXPECT_EQ(fresh[1].peer_id, id_of('d'));
  EXPECT_TRUE(view.learn(known, t0).empty());
  EXPECT_EQ(view.candidates().size(), 2u);
  // A newer incarnation of a candidate or member is news.
  EXPECT_EQ(view.learn(std::vector{info_of('c', 2), info_of('b', 3)}, t0).size(), 2u);
  EXPECT_TRUE(view.heard_of(id_of('c')));
  view.forget_candidates_at(info_of('c').address());
  EXPECT_FALSE(view.heard_of(id_of('c')));
  // Admitting a candidate removes it from the candidates.
  view.admit(member_of('d'), t0);
  EXPECT_EQ(view.candidates().count(id_of('d')), 0u);
}

// A candidate is at each of its addresses: forgetting one of them forgets it.
TEST_F(swarm_view_test, a_candidate_is_forgotten_at_an_alternate_address_too) {
  auto e = info_of('e');
  e.host = "2001:db8::5";
  e.alternates = {"10.0.0.5:4004", "peer-e.example.org:4004"};
  EXPECT_EQ(e.addresses(), (std::vector<std::string>{"[2001:db8::5]:4004", "10.0.0.5:4004",
                                                      "peer-e.example.org:4004"}));
  EXPECT_EQ(view.learn(std::vector{e, info_of('f')}, t0).size(), 2u);
  view.forget_candidates_at("10.0.0.5:4005");  // another port
  EXPECT_TRUE(view.heard_of(id_of('e')));
  view.forget_candidates_at("10.0.0.5:4004");
  EXPECT_FALSE(view.heard_of(id_of('e')));
  EXPECT_TRUE(view.heard_of(id_of('f')));
}

// A peer behind NAT changes its relays within one incarnation: the candidate's details follow,
// so that it is dialed through a relay that is still there.
TEST_F(swarm_view_test, a_candidates_new_relays_are_news) {
  auto behind_nat = info_of('c');
  behind_nat.reachable = false;
  behind_nat.relays = {"10.0.0.1:7000"};
  EXPECT_EQ(view.learn(std::vector{behind_nat}, t0).size(), 1u);
  EXPECT_TRUE(view.learn(std::vector{behind_nat}, t0).empty());
  behind_nat.relays = {"10.0.0.2:7000"};
  auto fresh = view.learn(std::vector{behind_nat}, t0);
  ASSERT_EQ(fresh.size(), 1u);
  EXPECT_EQ(view.candidates().at(id_of('c')).relays, behind_nat.relays);
  // An older incarnation never overwrites.
  auto older = info_of('c', 0);
  EXPECT_TRUE(view.learn(std::vector{older}, t0).empty());
}

TEST_F(swarm_view_test, silence_suspects_then_removes) {
  view.admit(member_of('b'), t0);
  view.admit(member_of('c'), t0);
  auto report = view.check_liveness(t0 + 2s);
  EXPECT_TRUE(report.suspected.empty());
  EXPECT_FALSE(view.heard_from(id_of('c'), 1, t0 + 2s));
  report = view.check_liveness(t0 + 4s);
  ASSERT_EQ(report.suspected.size(), 1u);
  EXPECT_EQ(report.suspected[0].peer_id, id_of('b'));
  EXPECT_TRUE(view.is_suspected(id_of('b')));
  // Reported once per silence.
  EXPECT_EQ(view.check_liveness(t0 + 5s).suspected.size(), 1u);  // c, now 3 s silent
  EXPECT_TRUE(view.check_liveness(t0 + 5500ms).suspected.empty());
  report = view.check_liveness(t0 + 9s);
  ASSERT_EQ(report.timed_out.size(), 1u);
  EXPECT_EQ(report.timed_out[0].info.peer_id, id_of('b'));
  EXPECT_EQ(view.size(), 2u);
  EXPECT_TRUE(view.is_tombstoned(id_of('b'), 1, t0 + 9s));
}

TEST_F(swarm_view_test, a_far_members_round_trip_widens_its_silence_thresholds) {
  view.admit(member_of('b'), t0);
  view.admit(member_of('c'), t0);
  view.set_link_timing(id_of('b'), 600ms, 0ms);  // b is far: +1.2 s
  view.set_link_timing(id_of('z'), 600ms, 0ms);  // not a member: ignored
  auto report = view.check_liveness(t0 + 3500ms);
  ASSERT_EQ(report.suspected.size(), 1u);
  EXPECT_EQ(report.suspected[0].peer_id, id_of('c'));
  report = view.check_liveness(t0 + 4200ms);
  ASSERT_EQ(report.suspected.size(), 1u);
  EXPECT_EQ(report.suspected[0].peer_id, id_of('b'));
  report = view.check_liveness(t0 + 8500ms);
  ASSERT_EQ(report.timed_out.size(), 1u);
  EXPECT_EQ(report.timed_out[0].info.peer_id, id_of('c'));
  EXPECT_EQ(view.check_liveness(t0 + 9200ms).timed_out.size(), 1u);  // b
  // A hostile or broken measurement counts as at most max_counted_round_trip.
  view.admit(member_of('d'), t0);
  view.set_link_timing(id_of('d'), std::chrono::hours(1), std::chrono::hours(1));
  const auto widest = t0 + 8s + 2 * max_counted_round_trip + max_counted_loss_stall;
  EXPECT_TRUE(view.check_liveness(widest - 1ms).timed_out.empty());
  EXPECT_EQ(view.check_liveness(widest).timed_out.size(), 1u);
}

// A link that loses packets can fall silent for a few retransmission timeouts: its measured
// stall widens the thresholds on top of the round trip, and a later loss-free figure narrows
// them again.
TEST_F(swarm_view_test, a_lossy_links_retransmission_stalls_widen_its_silence_thresholds) {
  view.admit(member_of('b'), t0);
  view.admit(member_of('c'), t0);
  view.set_link_timing(id_of('b'), 200ms, 3500ms);  // +0.4 s +3.5 s
  view.set_link_timing(id_of('c'), 200ms, 0ms);     // +0.4 s
  auto report = view.check_liveness(t0 + 3500ms);
  ASSERT_EQ(report.suspected.size(), 1u);
  EXPECT_EQ(report.suspected[0].peer_id, id_of('c'));
  EXPECT_TRUE(view.check_liveness(t0 + 6800ms).suspected.empty());
  report = view.check_liveness(t0 + 6900ms);
  ASSERT_EQ(report.suspected.size(), 1u);
  EXPECT_EQ(report.suspected[0].peer_id, id_of('b'));
  EXPECT_EQ(view.check_liveness(t0 + 8400ms).timed_out.size(), 1u);  // c
  EXPECT_TRUE(view.check_liveness(t0 + 11800ms).timed_out.empty());
  view.set_link_timing(id_of('b'), 200ms, 0ms);
  EXPECT_EQ(view.check_liveness(t0 + 11800ms).timed_out.size(), 1u);  // b
}

TEST_F(swarm_view_test, hearing_again_clears_suspicion) {
  view.admit(member_of('b'), t0);
  view.check_liveness(t0 + 4s);
  EXPECT_FALSE(view.heard_from(id_of('b'), 2, t0 + 4s));  // another incarnation: not this one
  EXPECT_TRUE(view.heard_from(id_of('b'), 1, t0 + 4s));
  EXPECT_FALSE(view.is_suspected(id_of('b')));
  EXPECT_TRUE(view.check_liveness(t0 + 9s).timed_out.empty());
  EXPECT_FALSE(view.heard_from(id_of('z'), 1, t0));
}

TEST_F(swarm_view_test, last_heard_is_the_newest_message_of_a_member) {
  EXPECT_FALSE(view.last_heard(id_of('b')).has_value());
  view.admit(member_of('b'), t0);
  EXPECT_EQ(view.last_heard(id_of('b')), t0);
  view.heard_from(id_of('b'), 1, t0 + 2s);
  EXPECT_EQ(view.last_heard(id_of('b')), t0 + 2s);
  view.heard_from(id_of('b'), 2, t0 + 3s);  // another incarnation: not this one
  EXPECT_EQ(view.last_heard(id_of('b')), t0 + 2s);
  view.remove(id_of('b'), t0 + 4s);
  EXPECT_FALSE(view.last_heard(id_of('b')).has_value());
}

TEST_F(swarm_view_test, split_needs_two_groups_that_did_not_know_each_other) {
  // Alone: joining anyone is no split.
  EXPECT_FALSE(view.split_merge_size(info_of('c'), std::vector{info_of('d')}));
  view.admit(member_of('b'), t0);
  // c unknown, and c knows d, unknown here: two groups meet.
  auto merged = view.split_merge_size(info_of('c'), std::vector{info_of('d'), info_of('d')});
  ASSERT_TRUE(merged);
  EXPECT_EQ(*merged, 2u);
  // c alone (its list holds only us and peers we know): an ordinary join.
  EXPECT_FALSE(view.split_merge_size(info_of('c'), std::vector{info_of('a'), info_of('b')}));
  // c was named by our group (a candidate): not a split even if it knows others.
  view.learn(std::vector{info_of('c')}, t0);
  EXPECT_FALSE(view.split_merge_size(info_of('c'), std::vector{info_of('d')}));
}

struct validation_case {
  const char* name;
  peer_info info;
  std::optional<rejection> expected;
};

class swarm_view_validation : public ::testing::TestWithParam<validation_case> {};

TEST_P(swarm_view_validation, classifies) {
  EXPECT_EQ(validate_peer_info(GetParam().info), GetParam().expected);
}

peer_info with(std::function<void(peer_info&)> change) {
  auto info = info_of('b');
  change(info);
  return info;
}

INSTANTIATE_TEST_SUITE_P(
  peer_info_fields, swarm_view_validation,
  ::testing::Values(
    validation_case{"valid", info_of('b'), std::nullopt},
    validation_case{"hostname", with([](auto& i) { i.host = "peer-3.example.org"; }), std::nullopt},
    validation_case{"ipv6", with([](auto& i) { i.host = "[fe80::1%eth0]"; }), std::nullopt},
    validation_case{"empty_swarm_id", with([](auto& i) { i.swarm_id.clear(); }), std::nullopt},
    validation_case{"empty_id", with([](auto& i) { i.peer_id.clear(); }), rejection::bad_peer_id},
    validation_case{"short_id", with([](auto& i) { i.peer_id.pop_back(); }),
                    rejection::bad_peer_id},
    validation_case{"upper_id", with([](auto& i) { i.peer_id = std::string(32, 'B'); }),
                    rejection::bad_peer_id},
    validation_case{"empty_host", with([](auto& i) { i.host.clear(); }), rejection::bad_host},
    validation_case{"long_host", with([](auto& i) { i.host = std::string(254, 'h'); }),
                    rejection::bad_host},
    validation_case{"space_in_host", with([](auto& i) { i.host = "a b"; }), rejection::bad_host},
    validation_case{"nul_in_host", with([](auto& i) { i.host = std::string("a\0b", 3); }),
                    rejection::bad_host},
    validation_case{"unclosed_bracket_host", with([](auto& i) { i.host = "[0.0.0.0"; }),
                    rejection::bad_host},
    validation_case{"port_zero", with([](auto& i) { i.port = 0; }), rejection::bad_port},
    validation_case{"long_swarm_id", with([](auto& i) { i.swarm_id = std::string(65, 's'); }),
                    rejection::bad_swarm_id},
    validation_case{"control_in_swarm_id", with([](auto& i) { i.swarm_id = "a\nb"; }),
                    rejection::bad_swarm_id},
    validation_case{"relays", with([](auto& i) { i.relays = {"10.0.0.1:7000", "[::1]:7001"}; }),
                    std::nullopt},
    validation_case{"too_many_relays",
                    with([](auto& i) { i.relays.assign(max_relays_per_peer + 1, "h:1"); }),
                    rejection::bad_host},
    validation_case{"relay_without_port", with([](auto& i) { i.relays = {"10.0.0.1"}; }),
                    rejection::bad_host},
    validation_case{"relay_port_zero", with([](auto& i) { i.relays = {"h:0"}; }),
                    rejection::bad_host},
    validation_case{"relay_port_too_large", with([](auto& i) { i.relays = {"h:65536"}; }),
                    rejection::bad_host},
    validation_case{"relay_with_space", with([](auto& i) { i.relays = {"a b:7"}; }),
                    rejection::bad_host},
    // What parse_peer_address would not read (found by the wire fuzz target).
    validation_case{"relay_unclosed_bracket", with([](auto& i) { i.relays = {"[h:7"}; }),
                    rejection::bad_host},
    validation_case{"relay_port_of_six_digits", with([](auto& i) { i.relays = {"h:000007"}; }),
                    rejection::bad_host},
    validation_case{"alternates",
                    with([](auto& i) { i.alternates = {"[2001:db8::1]:7000", "10.0.0.1:1"}; }),
                    std::nullopt},
    validation_case{"too_many_alternates",
                    with([](auto& i) { i.alternates.assign(max_alternate_addresses + 1, "h:1"); }),
                    rejection::bad_host},
    validation_case{"alternate_without_port", with([](auto& i) { i.alternates = {"::1"}; }),
                    rejection::bad_host},
    validation_case{"alternate_port_zero", with([](auto& i) { i.alternates = {"h:0"}; }),
                    rejection::bad_host},
    validation_case{"alternate_with_newline", with([](auto& i) { i.alternates = {"a\n:7"}; }),
                    rejection::bad_host}),
  [](const auto& info) { return std::string(info.param.name); });

TEST(swarm_view_validation_list, bounds_the_length_and_checks_each) {
  std::vector<peer_info> peers(max_known_peers, info_of('b'));
  EXPECT_EQ(validate_peer_list(peers), std::nullopt);
  peers.push_back(info_of('c'));
  EXPECT_EQ(validate_peer_list(peers), rejection::too_many_peers);
  std::vector<peer_info> bad{info_of('b'), with([](auto& i) { i.port = 0; })};
  EXPECT_EQ(validate_peer_list(bad), rejection::bad_port);
  EXPECT_EQ(to_string(rejection::wrong_sender), "wrong_sender");
  EXPECT_EQ(to_string(removal_reason::timeout), "timeout");
}

} // namespace
} // namespace ddactor
