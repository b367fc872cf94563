// The leader's side of matchmaking: joins wait until every awaited peer joined or the epoch is
// closed; groups are balanced and sorted; late joins are refused as closed; a peer that may not
// lead (elsewhere, reached by download, a lower leader known) sends the member on.
#include "runtime/matchmaking_leader.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <string>
#include <vector>

namespace ddactor {
namespace {

std::string id(char c) {
  return std::string(32, c);
}

matchmaking_leader::join join_of(char c, int64_t epoch, uint64_t ticket, uint64_t length = 100) {
  return {id(c), epoch, 10.0, length, 0.0, ticket, true};
}

struct swarm {
  epoch_reports reports;
  std::vector<std::string> ids;
  matchmaking_leader::swarm_knowledge knowledge() const { return {reports, ids}; }
};

// The first epoch from `from` on whose leader order begins with `order` (the order changes from
// epoch to epoch: matchmaking_rules.hpp).
int64_t epoch_ordered(std::initializer_list<char> peers, std::initializer_list<char> order,
                      int64_t from = 1) {
  std::vector<std::string> ids, wanted;
  for (char c : peers)
    ids.push_back(id(c));
  for (char c : order)
    wanted.push_back(id(c));
  for (int64_t epoch = from;; ++epoch) {
    const auto ordered = leader_order(ids, epoch);
    if (std::equal(wanted.begin(), wanted.end(), ordered.begin()))
      return epoch;
  }
}

swarm at_epoch(std::initializer_list<char> peers, int64_t epoch) {
  swarm s;
  for (char c : peers) {
    s.ids.push_back(id(c));
    s.reports.epochs[id(c)] = epoch;
  }
  return s;
}

TEST(matchmaking_leader, a_round_closes_when_every_awaited_peer_joined) {
  const int64_t e = epoch_ordered({'a', 'b', 'c'}, {'a'});
  const auto s = at_epoch({'a', 'b', 'c'}, e);
  matchmaking_leader leader(id('a'), 16);
  auto first = leader.on_join(join_of('c', e, 1), s.knowledge());
  EXPECT_EQ(first.outcome, matchmaking_leader::verdict::accepted);
  EXPECT_TRUE(first.opened);
  EXPECT_TRUE(first.formed.empty());
  EXPECT_TRUE(leader.on_join(join_of('a', e, 2), s.knowledge()).formed.empty());
  const auto last = leader.on_join(join_of('b', e, 3), s.knowledge());
  EXPECT_FALSE(last.opened);
  ASSERT_EQ(last.formed.size(), 1u);
  const auto& group = last.formed[0];
  ASSERT_EQ(group.members.size(), 3u);
  EXPECT_EQ(group.members[0].peer_id, id('a'));  // sorted by id, whatever the join order
  EXPECT_EQ(group.members[2].ticket, 1u);
  EXPECT_EQ(group.shares.size(), 3u);
  EXPECT_TRUE(leader.is_closed(e));
  EXPECT_EQ(leader.on_join(join_of('b', e, 4), s.knowledge()).outcome,
            matchmaking_leader::verdict::closed);
}

TEST(matchmaking_leader, peers_behind_nat_get_no_part_to_reduce) {
  const int64_t e = epoch_ordered({'a', 'b', 'c', 'd'}, {'a'});
  const auto s = at_epoch({'a', 'b', 'c', 'd'}, e);
  matchmaking_leader leader(id('a'), 16);
  matchmaking_leader::answer last;
  for (char c : {'a', 'b', 'c', 'd'}) {
    auto j = join_of(c, e, static_cast<uint64_t>(c));
    j.reachable = c == 'a' || c == 'c';
    last = leader.on_join(j, s.knowledge());
  }
  ASSERT_EQ(last.formed.size(), 1u);
  EXPECT_EQ(last.formed[0].shares, (std::vector<uint64_t>{1, 0, 1, 0}));
}

TEST(matchmaking_leader, closing_forms_balanced_groups_of_at_most_group_size) {
  const int64_t e = epoch_ordered({'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h'}, {'a'});
  const auto s = at_epoch({'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h'}, e);
  matchmaking_leader leader(id('a'), 3);
  for (char c : {'a', 'b', 'c', 'd', 'e', 'f', 'g'})
    EXPECT_TRUE(leader.on_join(join_of(c, e, static_cast<uint64_t>(c)), s.knowledge())
                  .formed.empty());
  // 'h' never joins: matchmaking_time passes.
  const auto groups = leader.close(e);
  ASSERT_EQ(groups.size(), 3u);
  EXPECT_EQ(groups[0].members.size(), 3u);
  EXPECT_EQ(groups[1].members.size(), 2u);
  EXPECT_EQ(groups[2].members.size(), 2u);
  EXPECT_TRUE(leader.close(e).empty());  // closing twice forms nothing
}

TEST(matchmaking_leader, a_retry_replaces_the_earlier_join) {
  const int64_t e = epoch_ordered({'a', 'b', 'c'}, {'a'});
  const auto s = at_epoch({'a', 'b', 'c'}, e);
  matchmaking_leader leader(id('a'), 16);
  leader.on_join(join_of('b', e, 1), s.knowledge());
  leader.on_join(join_of('b', e, 2), s.knowledge());
  const auto groups = leader.close(e);
  ASSERT_EQ(groups.size(), 1u);
  ASSERT_EQ(groups[0].members.size(), 1u);
  EXPECT_EQ(groups[0].members[0].ticket, 2u);
}

TEST(matchmaking_leader, different_vector_lengths_are_refused) {
  const int64_t e = epoch_ordered({'a', 'b', 'c'}, {'a'});
  const auto s = at_epoch({'a', 'b', 'c'}, e);
  matchmaking_leader leader(id('a'), 16);
  leader.on_join(join_of('b', e, 1, 100), s.knowledge());
  EXPECT_EQ(leader.on_join(join_of('c', e, 2, 99), s.knowledge()).outcome,
            matchmaking_leader::verdict::shape_mismatch);
}

TEST(matchmaking_leader, a_peer_elsewhere_or_behind_an_earlier_leader_does_not_lead) {
  // An epoch whose leader order is a, b, c.
  const int64_t e = epoch_ordered({'a', 'b', 'c'}, {'a', 'b', 'c'});
  auto s = at_epoch({'a', 'b', 'c'}, e);
  matchmaking_leader b(id('b'), 16);
  // 'a' is at the epoch and leads: 'b' sends the member on.
  const auto answer = b.on_join(join_of('c', e, 1), s.knowledge());
  EXPECT_EQ(answer.outcome, matchmaking_leader::verdict::not_leader);
  EXPECT_NE(answer.detail.find(id('a').substr(0, 8)), std::string::npos);
  // 'a' reached the epoch by a download: it does not lead, so 'b' does.
  s.reports.not_leading.insert(id('a'));
  EXPECT_EQ(b.on_join(join_of('c', e, 2), s.knowledge()).outcome,
            matchmaking_leader::verdict::accepted);
  // 'b' itself is two epochs on: it does not lead epoch e.
  s.reports.epochs[id('b')] = e + 2;
  matchmaking_leader elsewhere(id('b'), 16);
  EXPECT_EQ(elsewhere.on_join(join_of('c', e, 3), s.knowledge()).outcome,
            matchmaking_leader::verdict::not_leader);
}

TEST(matchmaking_leader, a_round_closes_when_an_awaited_peer_moves_on) {
  const int64_t e = epoch_ordered({'a', 'b', 'c'}, {'a'});
  auto s = at_epoch({'a', 'b', 'c'}, e);
  matchmaking_leader leader(id('a'), 16);
  leader.on_join(join_of('a', e, 1), s.knowledge());
  leader.on_join(join_of('b', e, 2), s.knowledge());
  EXPECT_TRUE(leader.close_full_rounds(s.knowledge()).empty());
  s.reports.epochs[id('c')] = e + 2;  // 'c' is elsewhere now: nobody else is awaited
  const auto groups = leader.close_full_rounds(s.knowledge());
  ASSERT_EQ(groups.size(), 1u);
  EXPECT_EQ(groups[0].members.size(), 2u);
}

TEST(matchmaking_rules_swarm_past, another_peer_past_the_epoch) {
  auto s = at_epoch({'a', 'b'}, 4);
  EXPECT_FALSE(swarm_past(s.reports, id('a'), 4));
  s.reports.epochs[id('a')] = 9;  // ourselves: no evidence about the others
  EXPECT_FALSE(swarm_past(s.reports, id('a'), 4));
  s.reports.epochs[id('b')] = 5;
  EXPECT_TRUE(swarm_past(s.reports, id('a'), 4));
}

TEST(matchmaking_rules_next_leader, the_first_candidate_in_the_epochs_order_not_failed) {
  const int64_t e = epoch_ordered({'a', 'b', 'c'}, {'c', 'a', 'b'});
  auto s = at_epoch({'a', 'b', 'c'}, e);
  EXPECT_EQ(next_leader(s.reports, s.ids, e, {}), id('c'));
  EXPECT_EQ(next_leader(s.reports, s.ids, e, {id('c')}), id('a'));
  s.reports.not_leading.insert(id('a'));
  EXPECT_EQ(next_leader(s.reports, s.ids, e, {id('c')}), id('b'));
  EXPECT_EQ(next_leader(s.reports, s.ids, e, {id('c'), id('b')}), "");
}

// No id leads every epoch: over many epochs each of four peers comes first about a quarter of
// the time, the lowest id included, and the order of one epoch is the same for every peer.
TEST(matchmaking_rules_next_leader, the_leader_changes_from_epoch_to_epoch) {
  const std::vector<std::string> ids{id('0'), id('a'), id('b'), id('f')};
  std::map<std::string, int> first;
  for (int64_t epoch = 0; epoch < 4000; ++epoch) {
    const auto order = leader_order(ids, epoch);
    EXPECT_EQ(order, leader_order({ids[3], ids[1], ids[0], ids[2]}, epoch));
    ++first[order[0]];
  }
  for (const auto& peer : ids)
    EXPECT_NEAR(first[peer], 1000, 150) << peer;
}

} // namespace
} // namespace ddactor
