// Who leads an epoch's matchmaking: with views that differ the way they do in a live swarm (the
// start of a swarm, a joiner not heard from yet, a joiner that downloaded the state), every
// member reaches the same leader. `leader_reached` plays a member asking candidates in the
// epoch's leader order, each asked peer answering from its own view, as the averager does. The
// scenario tests name peers by role: 'a' (or 'j') comes first in that order
// (tests/runtime/leader_roles.hpp).
#include "runtime/matchmaking_rules.hpp"

#include <gtest/gtest.h>

#include <optional>
#include <vector>

#include "tests/runtime/leader_roles.hpp"

namespace ddactor {
namespace {

using views = std::map<std::string, epoch_reports>;

// Whether `asked` accepts to lead `epoch` by its own view.
bool accepts(const views& all, const std::vector<std::string>& ids, const std::string& asked,
             int64_t epoch) {
  const auto& own = all.at(asked);
  if (!leader_candidate(own, asked, epoch))
    return false;
  for (const auto& lower : leader_order(epoch, ids)) {
    if (lower == asked)
      break;
    if (leads_instead(own, lower, epoch))
      return false;
  }
  return true;
}

std::optional<std::string> leader_reached(const views& all, const std::vector<std::string>& ids,
                                          const std::string& member, int64_t epoch) {
  const auto& own = all.at(member);
  for (const auto& candidate : leader_order(epoch, ids))
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

TEST(matchmaking_rules, at_the_start_of_a_swarm_everyone_reaches_the_first_in_order) {
  auto r = testing::role_ids(0, "abc");
  const std::vector<std::string> ids{r['a'], r['b'], r['c']};
  views all{{r['a'], {{{r['a'], 0}, {r['b'], 0}, {r['c'], 0}}, {}}},
            {r['b'], {{{r['b'], 0}}, {}}},               // has heard from nobody yet
            {r['c'], {{{r['a'], 0}, {r['c'], 0}}, {}}}};  // has not heard from b
  for (const auto& member : ids)
    EXPECT_EQ(leader_reached(all, ids, member, 0), r['a']) << member;
}

TEST(matchmaking_rules, a_joiner_not_heard_from_yet_leaves_the_epoch_a_leader) {
  // j comes first in the order, is still downloading (at epoch 0), and only m has heard from it.
  auto r = testing::role_ids(33, "jkmp");
  const std::vector<std::string> ids{r['j'], r['k'], r['m'], r['p']};
  views all{{r['j'], {{{r['j'], 0}, {r['k'], 33}, {r['m'], 33}, {r['p'], 33}}, {}}},
            {r['k'], {{{r['k'], 33}, {r['m'], 33}, {r['p'], 33}}, {}}},
            {r['m'], {{{r['j'], 0}, {r['k'], 33}, {r['m'], 33}, {r['p'], 33}}, {}}},
            {r['p'], {{{r['k'], 33}, {r['m'], 33}, {r['p'], 33}}, {}}}};
  for (char member : {'k', 'm', 'p'})
    EXPECT_EQ(leader_reached(all, ids, r[member], 33), r['k']) << member;
}

TEST(matchmaking_rules, a_joiner_that_downloaded_the_epoch_joins_the_old_leader) {
  // j downloaded epoch 50 and says it does not lead it; k has heard so, m not yet.
  auto r = testing::role_ids(50, "jkm");
  const std::vector<std::string> ids{r['j'], r['k'], r['m']};
  views all{{r['j'], {{{r['j'], 50}, {r['k'], 50}, {r['m'], 50}}, {r['j']}}},
            {r['k'], {{{r['j'], 50}, {r['k'], 50}, {r['m'], 50}}, {r['j']}}},
            {r['m'], {{{r['k'], 50}, {r['m'], 50}}, {}}}};
  for (const auto& member : ids)
    EXPECT_EQ(leader_reached(all, ids, member, 50), r['k']) << member;
}

TEST(matchmaking_rules, no_id_leads_every_epoch) {
  // However an id was chosen (the lowest possible here), it leads about 1 epoch in n.
  std::vector<std::string> ids{std::string(32, '0')};
  for (int k = 1; k < 10; ++k)
    ids.push_back(std::string(31, 'a') + std::to_string(k));
  int led = 0;
  for (int64_t epoch = 0; epoch < 1000; ++epoch)
    led += leader_order(epoch, ids).front() == ids[0] ? 1 : 0;
  EXPECT_GT(led, 50);
  EXPECT_LT(led, 160);
  // Every peer computes the same order, whatever order its view lists the ids in.
  auto reversed = std::vector<std::string>(ids.rbegin(), ids.rend());
  EXPECT_EQ(leader_order(7, ids), leader_order(7, reversed));
}

} // namespace
} // namespace ddactor
