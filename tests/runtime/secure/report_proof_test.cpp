// Signed progress reports: every claim and the sequence are covered, a key speaks only for its
// own id, and the tracker refuses a report older than the newest it has from that peer.
#include "runtime/secure/report_proof.hpp"

#include <gtest/gtest.h>

#include <functional>
#include <vector>

#include "runtime/progress_tracker.hpp"

namespace ddactor {
namespace {

progress_report report_of(const peer_key& key) {
  progress_report r;
  r.peer_id = peer_id_of(key.public_part());
  r.swarm_id = "swarm";
  r.epoch = 12;
  r.samples = 48;
  r.samples_per_second = 310.5;
  r.state_digest = 0x1234;
  r.sequence = 7;
  return r;
}

TEST(report_proof, every_claim_and_the_sequence_are_signed) {
  auto key = peer_key::generate();
  auto r = report_of(key);
  EXPECT_FALSE(report_proven(r));  // no proof at all
  sign_report(r, key);
  EXPECT_TRUE(report_proven(r));
  for (auto change : std::vector<std::function<void(progress_report&)>>{
         [](progress_report& x) { x.epoch = 100012; },
         [](progress_report& x) { x.samples += 1; },
         [](progress_report& x) { x.samples_per_second = 310.50000000001; },
         [](progress_report& x) { x.ready = true; },
         [](progress_report& x) { x.state_digest ^= 1; },
         [](progress_report& x) { x.resyncing = true; },
         [](progress_report& x) { x.may_lead = false; },
         [](progress_report& x) { x.sequence += 1; },
         [](progress_report& x) { x.link_rate = 1.25e6; },
         [](progress_report& x) { x.swarm_id = "other"; },
         [](progress_report& x) { x.signature[17] ^= 4; },
         [](progress_report& x) { x.public_key.pop_back(); }}) {
    auto changed = r;
    change(changed);
    EXPECT_FALSE(report_proven(changed));
  }
}

TEST(report_proof, a_key_speaks_only_for_its_own_id) {
  auto key = peer_key::generate();
  auto victim = peer_key::generate();
  auto r = report_of(victim);  // claims the victim's id, e.g. to vouch twice in a quorum
  sign_report(r, key);
  EXPECT_FALSE(report_proven(r));
}

TEST(report_proof, the_tracker_refuses_a_replayed_older_report) {
  auto key = peer_key::generate();
  progress_tracker tracker({std::string(32, 'a'), "swarm", 100, std::chrono::seconds(5), true, 16});
  const auto now = progress_tracker::clock::now();
  auto old_report = report_of(key);
  auto newer = old_report;
  newer.epoch = 13;
  newer.sequence = 8;
  ASSERT_TRUE(tracker.on_report(old_report, now));
  ASSERT_TRUE(tracker.on_report(newer, now));
  EXPECT_FALSE(tracker.on_report(old_report, now));  // recorded earlier, sent again
  EXPECT_EQ(tracker.epochs(now).epochs.at(newer.peer_id), 13);
  EXPECT_TRUE(tracker.on_report(newer, now));  // the newest again (a heartbeat) is fine
}

} // namespace
} // namespace ddactor
