// The leader's side of matchmaking: joins wait until every awaited peer joined or the epoch is
// closed; groups are balanced and sorted; late joins are refused as closed; a peer that may not
// lead (elsewhere, reached by download, a lower leader known) sends the member on.
#include "runtime/matchmaking_leader.hpp"

#include <gtest/gtest.h>

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

swarm at_epoch(std::initializer_list<char> peers, int64_t epoch) {
  swarm s;
  for (char c : peers) {
    s.ids.push_back(id(c));
    s.reports.epochs[id(c)] = epoch;
  }
  return s;
}

TEST(matchmaking_leader, a_round_closes_when_every_awaited_peer_joined) {
  const auto s = at_epoch({'a', 'b', 'c'}, 5);
  matchmaking_leader leader(id('a'), 16);
  auto first = leader.on_join(join_of('c', 5, 1), s.knowledge());
  EXPECT_EQ(first.outcome, matchmaking_leader::verdict::accepted);
  EXPECT_TRUE(first.opened);
  EXPECT_TRUE(first.formed.empty());
  EXPECT_TRUE(leader.on_join(join_of('a', 5, 2), s.knowledge()).formed.empty());
  const auto last = leader.on_join(join_of('b', 5, 3), s.knowledge());
  EXPECT_FALSE(last.opened);
  ASSERT_EQ(last.formed.size(), 1u);
  const auto& group = last.formed[0];
  ASSERT_EQ(group.members.size(), 3u);
  EXPECT_EQ(group.members[0].peer_id, id('a'));  // sorted by id, whatever the join order
  EXPECT_EQ(group.members[2].ticket, 1u);
  EXPECT_EQ(group.shares.size(), 3u);
  EXPECT_TRUE(leader.is_closed(5));
  EXPECT_EQ(leader.on_join(join_of('b', 5, 4), s.knowledge()).outcome,
            matchmaking_leader::verdict::closed);
}

TEST(matchmaking_leader, peers_behind_nat_get_no_part_to_reduce) {
  const auto s = at_epoch({'a', 'b', 'c', 'd'}, 3);
  matchmaking_leader leader(id('a'), 16);
  matchmaking_leader::answer last;
  for (char c : {'a', 'b', 'c', 'd'}) {
    auto j = join_of(c, 3, static_cast<uint64_t>(c));
    j.reachable = c == 'a' || c == 'c';
    last = leader.on_join(j, s.knowledge());
  }
  ASSERT_EQ(last.formed.size(), 1u);
  EXPECT_EQ(last.formed[0].shares, (std::vector<uint64_t>{1, 0, 1, 0}));
}

TEST(matchmaking_leader, closing_forms_balanced_groups_of_at_most_group_size) {
  const auto s = at_epoch({'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h'}, 2);
  matchmaking_leader leader(id('a'), 3);
  for (char c : {'a', 'b', 'c', 'd', 'e', 'f', 'g'})
    EXPECT_TRUE(leader.on_join(join_of(c, 2, static_cast<uint64_t>(c)), s.knowledge())
                  .formed.empty());
  // 'h' never joins: matchmaking_time passes.
  const auto groups = leader.close(2);
  ASSERT_EQ(groups.size(), 3u);
  EXPECT_EQ(groups[0].members.size(), 3u);
  EXPECT_EQ(groups[1].members.size(), 2u);
  EXPECT_EQ(groups[2].members.size(), 2u);
  EXPECT_TRUE(leader.close(2).empty());  // closing twice forms nothing
}

TEST(matchmaking_leader, a_retry_replaces_the_earlier_join) {
  const auto s = at_epoch({'a', 'b', 'c'}, 1);
  matchmaking_leader leader(id('a'), 16);
  leader.on_join(join_of('b', 1, 1), s.knowledge());
  leader.on_join(join_of('b', 1, 2), s.knowledge());
  const auto groups = leader.close(1);
  ASSERT_EQ(groups.size(), 1u);
  ASSERT_EQ(groups[0].members.size(), 1u);
  EXPECT_EQ(groups[0].members[0].ticket, 2u);
}

TEST(matchmaking_leader, different_vector_lengths_are_refused) {
  const auto s = at_epoch({'a', 'b', 'c'}, 1);
  matchmaking_leader leader(id('a'), 16);
  leader.on_join(join_of('b', 1, 1, 100), s.knowledge());
  EXPECT_EQ(leader.on_join(join_of('c', 1, 2, 99), s.knowledge()).outcome,
            matchmaking_leader::verdict::shape_mismatch);
}

TEST(matchmaking_leader, a_peer_elsewhere_or_behind_a_lower_leader_does_not_lead) {
  auto s = at_epoch({'a', 'b', 'c'}, 7);
  matchmaking_leader b(id('b'), 16);
  // 'a' is at the epoch and leads: 'b' sends the member on.
  const auto answer = b.on_join(join_of('c', 7, 1), s.knowledge());
  EXPECT_EQ(answer.outcome, matchmaking_leader::verdict::not_leader);
  EXPECT_NE(answer.detail.find(id('a').substr(0, 8)), std::string::npos);
  // 'a' reached the epoch by a download: it does not lead, so 'b' does.
  s.reports.not_leading.insert(id('a'));
  EXPECT_EQ(b.on_join(join_of('c', 7, 2), s.knowledge()).outcome,
            matchmaking_leader::verdict::accepted);
  // 'b' itself is two epochs on: it does not lead epoch 7.
  s.reports.epochs[id('b')] = 9;
  matchmaking_leader elsewhere(id('b'), 16);
  EXPECT_EQ(elsewhere.on_join(join_of('c', 7, 3), s.knowledge()).outcome,
            matchmaking_leader::verdict::not_leader);
}

TEST(matchmaking_leader, a_round_closes_when_an_awaited_peer_moves_on) {
  auto s = at_epoch({'a', 'b', 'c'}, 3);
  matchmaking_leader leader(id('a'), 16);
  leader.on_join(join_of('a', 3, 1), s.knowledge());
  leader.on_join(join_of('b', 3, 2), s.knowledge());
  EXPECT_TRUE(leader.close_full_rounds(s.knowledge()).empty());
  s.reports.epochs[id('c')] = 5;  // 'c' is elsewhere now: nobody else is awaited
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

TEST(matchmaking_rules_next_leader, the_lowest_candidate_not_failed) {
  auto s = at_epoch({'a', 'b', 'c'}, 4);
  EXPECT_EQ(next_leader(s.reports, s.ids, 4, {}), id('a'));
  EXPECT_EQ(next_leader(s.reports, s.ids, 4, {id('a')}), id('b'));
  s.reports.not_leading.insert(id('b'));
  EXPECT_EQ(next_leader(s.reports, s.ids, 4, {id('a')}), id('c'));
  EXPECT_EQ(next_leader(s.reports, s.ids, 4, {id('a'), id('c')}), "");
}

} // namespace
} // namespace ddactor
