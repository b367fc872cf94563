// The progress rules: the swarm's samples in our epoch from fresh reports, the once-per-epoch
// signal at the target, falling behind, refused reports, split detection after two checks, and
// the ranking of state sources.
#include "runtime/progress_tracker.hpp"

#include <gtest/gtest.h>

#include <string>

namespace ddactor {
namespace {

using namespace std::chrono_literals;
using clock_type = progress_tracker::clock;
using kind = progress_tracker::decision::kind;

// Assigned as std::string: GCC 12 warns (-Wrestrict, a false positive) on assigning a literal.
const std::string swarm = "s";
const std::string other_swarm_id = "t";

std::string id(char c) {
  return std::string(32, c);
}

progress_tracker tracker_for(char self, int64_t target = 100) {
  return progress_tracker({id(self), swarm, target, 5000ms, true, 16});
}

progress_report report(char peer, int64_t epoch, int64_t samples, uint64_t digest = 1,
                       bool resyncing = false) {
  progress_report r;
  r.peer_id = id(peer);
  r.swarm_id = swarm;
  r.epoch = epoch;
  r.samples = samples;
  r.samples_per_second = 10;
  r.state_digest = digest;
  r.resyncing = resyncing;
  return r;
}

TEST(progress_tracker, the_target_counts_fresh_reports_at_our_epoch_and_signals_once) {
  auto t = tracker_for('a');
  const auto now = clock_type::now();
  t.on_own_progress(3, 40, 10, 1, false, true);
  ASSERT_TRUE(t.on_report(report('b', 3, 30), now));
  ASSERT_TRUE(t.on_report(report('c', 2, 500), now));  // another epoch: not counted
  EXPECT_EQ(t.estimate(now).epoch_samples, 70);
  EXPECT_EQ(t.update(now).what, kind::none);
  EXPECT_FALSE(t.mine().ready);
  t.on_report(report('b', 3, 60), now);
  const auto decision = t.update(now);
  EXPECT_EQ(decision.what, kind::average);
  EXPECT_EQ(decision.epoch, 3);
  EXPECT_TRUE(t.mine().ready);
  EXPECT_EQ(t.update(now).what, kind::none);  // once per epoch
  // A report gone stale no longer counts.
  EXPECT_EQ(t.estimate(now + 6s).epoch_samples, 40);
}

// A lone swarm peer whose trainer restarted from the checkpoint of epoch 30 after it had
// reached epoch 32: the target of epoch 30 is signalled again (it waited for ever before).
TEST(progress_tracker, an_epoch_reached_again_after_a_restart_is_signalled_again) {
  auto t = tracker_for('a');
  const auto now = clock_type::now();
  for (int64_t epoch = 30; epoch <= 32; ++epoch) {
    t.on_own_progress(epoch, 100, 10, 1, false, true);
    ASSERT_EQ(t.update(now).what, kind::average) << epoch;
  }
  t.on_own_progress(30, 0, 10, 1, false, true);
  EXPECT_EQ(t.update(now).what, kind::none);
  t.on_own_progress(30, 100, 10, 1, false, true);
  const auto decision = t.update(now);
  EXPECT_EQ(decision.what, kind::average);
  EXPECT_EQ(decision.epoch, 30);
  EXPECT_EQ(t.update(now).what, kind::none);  // still once per epoch
}

TEST(progress_tracker, a_peer_past_our_epoch_means_we_fell_behind) {
  auto t = tracker_for('a');
  const auto now = clock_type::now();
  t.on_own_progress(3, 400, 10, 1, false, true);
  t.on_report(report('b', 5, 0), now);
  const auto decision = t.update(now);
  EXPECT_EQ(decision.what, kind::behind);
  EXPECT_EQ(decision.epoch, 5);
  EXPECT_FALSE(t.mine().ready);  // not ready to average an epoch the swarm left
  EXPECT_EQ(t.update(now).what, kind::none);  // told once per epoch ahead
}

TEST(progress_tracker, implausible_or_foreign_reports_are_refused) {
  auto t = tracker_for('a');
  const auto now = clock_type::now();
  auto other_swarm = report('b', 1, 1);
  other_swarm.swarm_id = other_swarm_id;
  EXPECT_FALSE(t.on_report(other_swarm, now));
  EXPECT_FALSE(t.on_report(report('b', 1, int64_t{1} << 41), now));
  EXPECT_FALSE(t.on_report(report('b', -1, 1), now));
  EXPECT_FALSE(t.on_report(report('a', 1, 1), now));  // our own id
  auto fast = report('b', 1, 1);
  fast.samples_per_second = 1e12;
  EXPECT_FALSE(t.on_report(fast, now));
  EXPECT_EQ(t.estimate(now).peers_reported, 0);
}

TEST(progress_tracker, epochs_for_matchmaking_include_ours_and_who_does_not_lead) {
  auto t = tracker_for('a');
  const auto now = clock_type::now();
  t.on_own_progress(4, 0, 0, 1, false, false);
  auto joiner = report('b', 4, 0);
  joiner.may_lead = false;
  EXPECT_EQ(t.on_report(joiner, now), std::optional<bool>(true));
  EXPECT_EQ(t.on_report(joiner, now), std::optional<bool>(false));  // nothing moved
  const auto epochs = t.epochs(now);
  EXPECT_EQ(epochs.epochs.at(id('a')), 4);
  EXPECT_EQ(epochs.not_leading, (std::set<std::string>{id('a'), id('b')}));
  t.keep_peers({}, 1);
  EXPECT_EQ(t.epochs(now).epochs.size(), 1u);
}

// After the last epoch: settled once every fresh peer reports our epoch with our digest; a peer
// still on its way, or one holding other weights, keeps us waiting; one claiming a later epoch
// does not; in a swarm larger than a group, reaching the epoch is enough.
TEST(progress_tracker, the_swarm_settles_when_every_fresh_peer_holds_our_final_weights) {
  auto t = tracker_for('a');
  const auto now = clock_type::now();
  t.on_own_progress(10, 0, 0, 111, false, true);
  EXPECT_TRUE(t.settled(now));  // alone
  t.on_report(report('b', 9, 0, 222), now);
  t.on_report(report('c', 10, 0, 111), now);
  EXPECT_FALSE(t.settled(now));  // b is still at epoch 9
  t.on_report(report('b', 10, 0, 333), now);
  EXPECT_FALSE(t.settled(now));  // b holds other final weights: it takes ours first
  t.on_report(report('b', 10, 0, 111), now);
  EXPECT_TRUE(t.settled(now));
  t.on_report(report('d', 100010, 0, 444), now);
  EXPECT_TRUE(t.settled(now));  // a claim past our epoch has nothing to compare
  // A peer gone silent no longer counts; a peer whose weights most others hold wins.
  t.on_report(report('e', 10, 0, 555), now);
  EXPECT_FALSE(t.settled(now));
  EXPECT_TRUE(t.settled(now + 6s));  // every report stale: nobody to wait for
  auto minority = tracker_for('a');
  minority.on_own_progress(10, 0, 0, 111, false, true);
  minority.on_report(report('b', 10, 0, 222), now);
  minority.on_report(report('c', 10, 0, 222), now);
  EXPECT_FALSE(minority.settled(now));  // we take theirs, then settle
  minority.on_own_progress(10, 0, 0, 222, false, true);
  EXPECT_TRUE(minority.settled(now));
  // More peers than a group: their digests differ by design.
  progress_tracker large({id('a'), swarm, 100, 5000ms, true, 2});
  large.on_own_progress(10, 0, 0, 111, false, true);
  large.on_report(report('b', 10, 0, 222), now);
  large.on_report(report('c', 10, 0, 333), now);
  EXPECT_TRUE(large.settled(now));
}

TEST(progress_tracker, a_split_is_decided_at_the_second_check_running) {
  auto t = tracker_for('a');
  const auto now = clock_type::now();
  t.on_own_progress(7, 0, 0, 111, false, true);
  t.on_report(report('b', 7, 0, 222), now);
  t.on_report(report('c', 7, 0, 222), now);
  EXPECT_FALSE(t.check_agreement(now));  // one check may see half an update
  const auto split = t.check_agreement(now);
  ASSERT_TRUE(split);
  EXPECT_TRUE(split->first_time);
  EXPECT_EQ(split->agreed.digest, 222u);
  EXPECT_EQ(split->agreed.holders, (std::vector<std::string>{id('b'), id('c')}));
  EXPECT_FALSE(t.check_agreement(now)->first_time);
  // We took their state: agreement again.
  t.on_own_progress(7, 0, 0, 222, false, true);
  EXPECT_FALSE(t.check_agreement(now));
}

TEST(progress_tracker, state_sources_in_sync_first_by_epoch) {
  auto t = tracker_for('b');
  const auto now = clock_type::now();
  t.on_own_progress(5, 0, 0, 1, true, true);
  t.on_report(report('a', 5, 0, 1, true), now);
  t.on_report(report('c', 6, 0, 1), now);
  t.on_report(report('d', 4, 0, 1), now);
  const auto ranked = t.rank_state_sources({id('a'), id('c'), id('d'), id('e')}, now);
  EXPECT_EQ(ranked.peer_ids, (std::vector<std::string>{id('c'), id('d'), id('a'), id('e')}));
  EXPECT_FALSE(ranked.keep_own_state);  // c holds the swarm's state
}

TEST(progress_tracker, when_everyone_resyncs_the_lowest_id_keeps_its_own_state) {
  auto low = tracker_for('a');
  auto high = tracker_for('b');
  const auto now = clock_type::now();
  low.on_own_progress(5, 0, 0, 1, true, true);
  high.on_own_progress(5, 0, 0, 2, true, true);
  low.on_report(report('b', 5, 0, 2, true), now);
  high.on_report(report('a', 5, 0, 1, true), now);
  EXPECT_TRUE(low.rank_state_sources({id('b')}, now).keep_own_state);
  EXPECT_FALSE(high.rank_state_sources({id('a')}, now).keep_own_state);
}

// One hostile peer claiming a far-future epoch (to be downloaded from) is one voice short of the
// quorum while another peer is at our epoch; once a second peer is past us, we are behind, at
// the epoch the two vouch for, not at the claim.
TEST(progress_tracker, one_peer_claiming_a_far_future_epoch_is_not_followed) {
  auto t = tracker_for('a');
  const auto now = clock_type::now();
  t.on_own_progress(3, 0, 10, 1, false, true);
  t.on_report(report('m', 99995, 0, 9), now);
  t.on_report(report('c', 3, 0, 1), now);
  EXPECT_EQ(t.update(now).what, kind::none);
  EXPECT_EQ(t.unvouched_claims(), 1u);
  EXPECT_EQ(t.estimate(now).quorum_epoch, 3);
  t.on_report(report('c', 4, 0, 7), now);
  const auto decision = t.update(now);
  EXPECT_EQ(decision.what, kind::behind);
  EXPECT_EQ(decision.epoch, 4);
  // What may be taken: the honest peers' state at 3 (both held digest 1), not the claim.
  const auto vouched = t.vouched(now);
  EXPECT_EQ(vouched.required, 2u);
  EXPECT_FALSE(may_take(vouched, 99995, 9));
  EXPECT_FALSE(may_take(vouched, 4, 7));  // c alone holds it so far
}

// CI of stop 26: three peers in view, and the hostile one's report came first; counting only the
// peers that had reported, its word alone was a quorum of one and two honest peers downloaded
// its forged state. Peers in the view count before they report.
TEST(progress_tracker, a_lone_first_report_is_no_quorum_while_others_are_in_view) {
  auto t = tracker_for('a');
  const auto now = clock_type::now();
  t.on_own_progress(0, 0, 10, 1, false, true);
  t.keep_peers({id('m'), id('c')}, 3);
  t.on_report(report('m', 100000, 0, 9), now);
  EXPECT_EQ(t.update(now).what, kind::none);
  EXPECT_EQ(t.estimate(now).quorum_epoch, 0);
  EXPECT_EQ(t.vouched(now).required, 2u);
  EXPECT_FALSE(may_take(t.vouched(now), 100000, 9));
  // Two peers alone still follow each other.
  auto pair = tracker_for('a');
  pair.on_own_progress(0, 0, 10, 1, false, true);
  pair.keep_peers({id('c')}, 2);
  pair.on_report(report('c', 4, 0, 7), now);
  EXPECT_EQ(pair.update(now).what, kind::behind);
  EXPECT_TRUE(may_take(pair.vouched(now), 4, 7));
}

TEST(progress_tracker, sources_a_quorum_vouches_for_come_first) {
  auto t = tracker_for('a');
  const auto now = clock_type::now();
  t.on_own_progress(2, 0, 10, 1, false, true);
  t.on_report(report('m', 9000, 0, 9), now);
  t.on_report(report('b', 5, 0, 7), now);
  t.on_report(report('c', 5, 0, 7), now);
  const auto ranked = t.rank_state_sources({id('m'), id('b'), id('c')}, now);
  EXPECT_EQ(ranked.peer_ids, (std::vector<std::string>{id('b'), id('c'), id('m')}));
  EXPECT_TRUE(may_take(t.vouched(now), 5, 7));
}

} // namespace
} // namespace ddactor
