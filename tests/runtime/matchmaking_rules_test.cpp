// Who leads an epoch's matchmaking: with views that differ the way they do in a live swarm (the
// start of a swarm, a joiner not heard from yet, a joiner that downloaded the state), every
// member reaches the same leader. `leader_reached` plays a member asking candidates in the
// epoch's leader order, each asked peer answering from its own view, as the averager does.
#include "runtime/matchmaking_rules.hpp"

#include <gtest/gtest.h>

#include <optional>
#include <vector>

namespace ddactor {
namespace {

using views = std::map<std::string, epoch_reports>;

// Whether `asked` accepts to lead `epoch` by its own view.
bool accepts(const views& all, const std::vector<std::string>& ids, const std::string& asked,
             int64_t epoch) {
  const auto& own = all.at(asked);
  if (!leader_candidate(own, asked, epoch))
    return false;
  for (const auto& earlier : leader_order(ids, epoch)) {
    if (earlier == asked)
      break;
    if (leads_instead(own, earlier, epoch))
      return false;
  }
  return true;
}

std::optional<std::string> leader_reached(const views& all, const std::vector<std::string>& ids,
                                          const std::string& member, int64_t epoch) {
  const auto& own = all.at(member);
  for (const auto& candidate : leader_order(ids, epoch))
    if (leader_candidate(own, candidate, epoch) && accepts(all, ids, candidate, epoch))
      return candidate;
  return std::nullopt;
}

TEST(matchmaking_rules, a_report_of_the_epoch_or_the_one_before_counts) {
  epoch_reports r{{{"a", 5}, {"b", 4}, {"c", 7}}, {}};
  EXPECT_TRUE(reported_at(r, "a", 5));
  EXPECT_TRUE(reported_at(r, "b", 5));
  EXPECT_FALSE(reported_at(r, "c", 5));  // moved on: neither awaited nor a leader
  EXPECT_FALSE(awaited_in(r, "c", 5));
  EXPECT_FALSE(leader_candidate(r, "c", 5));
  EXPECT_FALSE(reported_at(r, "d", 5));  // not heard from: awaited, asked, but no reason to defer
  EXPECT_TRUE(awaited_in(r, "d", 5));
  EXPECT_TRUE(leader_candidate(r, "d", 5));
  EXPECT_FALSE(leads_instead(r, "d", 5));
}

TEST(matchmaking_rules, a_peer_that_downloaded_its_epoch_is_awaited_but_does_not_lead_it) {
  epoch_reports r{{{"a", 5}}, {"a"}};
  EXPECT_TRUE(awaited_in(r, "a", 5));
  EXPECT_FALSE(leader_candidate(r, "a", 5));
  EXPECT_FALSE(leads_instead(r, "a", 5));
}

TEST(matchmaking_rules, a_peer_declines_only_the_epoch_it_downloaded_not_the_next) {
  epoch_reports r{{{"a", 5}}, {"a"}};
  EXPECT_TRUE(declines_to_lead(r, "a", 5));
  EXPECT_FALSE(declines_to_lead(r, "a", 6));
  EXPECT_TRUE(leader_candidate(r, "a", 6));
  EXPECT_TRUE(leads_instead(r, "a", 6));
}

// Peer names whose leader order at `epoch` is the order given (the names are picked to fit).
std::vector<std::string> ordered_names(std::size_t count, int64_t epoch) {
  std::vector<std::string> names;
  for (std::size_t i = 0; i < count; ++i)
    names.push_back(std::string(1, static_cast<char>('a' + i)));
  return leader_order(names, epoch);
}

TEST(matchmaking_rules, at_the_start_of_a_swarm_everyone_reaches_the_first_in_order) {
  const auto order = ordered_names(3, 0);  // order[0] leads epoch 0 if it may
  const auto &a = order[0], &b = order[1], &c = order[2];
  const std::vector<std::string> ids{a, b, c};
  views all{{a, {{{a, 0}, {b, 0}, {c, 0}}, {}}},
            {b, {{{b, 0}}, {}}},           // has heard from nobody yet
            {c, {{{a, 0}, {c, 0}}, {}}}};  // has not heard from b
  for (const auto& member : ids)
    EXPECT_EQ(leader_reached(all, ids, member, 0), a) << member;
}

TEST(matchmaking_rules, a_joiner_not_heard_from_yet_leaves_the_epoch_a_leader) {
  // j comes first at epoch 33, is still downloading (at epoch 0), and only m has heard from it.
  const auto order = ordered_names(4, 33);
  const auto &j = order[0], &k = order[1], &m = order[2], &p = order[3];
  const std::vector<std::string> ids{j, k, m, p};
  views all{{j, {{{j, 0}, {k, 33}, {m, 33}, {p, 33}}, {}}},
            {k, {{{k, 33}, {m, 33}, {p, 33}}, {}}},
            {m, {{{j, 0}, {k, 33}, {m, 33}, {p, 33}}, {}}},
            {p, {{{k, 33}, {m, 33}, {p, 33}}, {}}}};
  for (const auto& member : {k, m, p})
    EXPECT_EQ(leader_reached(all, ids, member, 33), k) << member;
}

TEST(matchmaking_rules, a_joiner_that_downloaded_the_epoch_joins_the_old_leader) {
  // j downloaded epoch 50 and says it does not lead it; k has heard so, m not yet.
  const auto order = ordered_names(3, 50);
  const auto &j = order[0], &k = order[1], &m = order[2];
  const std::vector<std::string> ids{j, k, m};
  views all{{j, {{{j, 50}, {k, 50}, {m, 50}}, {j}}},
            {k, {{{j, 50}, {k, 50}, {m, 50}}, {j}}},
            {m, {{{k, 50}, {m, 50}}, {}}}};
  for (const auto& member : ids)
    EXPECT_EQ(leader_reached(all, ids, member, 50), k) << member;
}

// Seen in a swarm with averaging.overlap: j joined by downloading epoch 1 (reported "does not
// lead" there), averaged epoch 1 with k, and both started epoch 2 at once, their epoch-2 samples
// trained during the round. k asked before j's report of epoch 2 arrived. When j refused epoch 2
// from its epoch-1 report, k led and j (at epoch 2 a moment later) led too: two groups of one,
// epoch after epoch. Now every view reaches j, whether or not it has j's newer report.
TEST(matchmaking_rules, a_joiner_that_downloaded_the_epoch_before_leads_this_one_in_every_view) {
  const auto order = ordered_names(2, 2);
  const auto &j = order[0], &k = order[1];
  const std::vector<std::string> ids{j, k};
  const views before_j_reports{{j, {{{j, 1}, {k, 2}}, {j}}}, {k, {{{j, 1}, {k, 2}}, {j}}}};
  const views after_j_reports{{j, {{{j, 2}, {k, 2}}, {}}}, {k, {{{j, 2}, {k, 2}}, {}}}};
  for (const auto* all : {&before_j_reports, &after_j_reports})
    for (const auto& member : ids)
      EXPECT_EQ(leader_reached(*all, ids, member, 2), j) << member;
}

// A member whose own peer leads an open round of the epoch joins it before any other: the
// members that chose this peer wait there for it.
TEST(matchmaking_rules, a_member_joins_the_round_its_own_peer_leads) {
  const auto order = ordered_names(2, 7);
  const auto &first = order[0], &second = order[1];
  const epoch_reports r{{{first, 7}, {second, 7}}, {}};
  EXPECT_EQ(next_leader(r, {first, second}, 7, {}), first);
  EXPECT_EQ(next_leader(r, {first, second}, 7, {}, second), second);
  // Unless its own leader failed it (then the order decides as before).
  EXPECT_EQ(next_leader(r, {first, second}, 7, {second}, second), first);
}

} // namespace
} // namespace ddactor
