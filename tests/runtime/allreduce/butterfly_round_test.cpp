// Tests of one member's round state machine fed by hand: what it asks to code and send, and how
// it treats hostile, stale, duplicate and late input (the whole-group behaviour is tested through
// simulate_butterfly_allreduce in butterfly_allreduce_test.cpp).
#include "runtime/allreduce/butterfly_round.hpp"

#include <gtest/gtest.h>

#include <limits>
#include <memory>
#include <vector>

namespace ddactor {
namespace {

constexpr uint64_t round_id = 42;

round_setup setup_of(std::size_t members, uint32_t me, std::vector<float> values,
                     std::size_t chunk_elements) {
  round_setup setup;
  setup.round_id = round_id;
  for (std::size_t m = 0; m < members; ++m)
    setup.members.push_back({static_cast<double>(m + 1), 1, {}, {}});
  setup.me = me;
  setup.values = std::make_shared<const std::vector<float>>(std::move(values));
  setup.chunk_elements = chunk_elements;
  return setup;
}

template <class Action>
std::vector<Action> all_of(const std::vector<round_action>& actions) {
  std::vector<Action> out;
  for (const auto& a : actions)
    if (const auto* x = std::get_if<Action>(&a))
      out.push_back(*x);
  return out;
}

// A chunk as member `sender` would send it: values at `offset` of part `part` (of `part_length`).
allreduce_chunk chunk_from(uint32_t sender, uint64_t member_set, allreduce_phase phase,
                           uint32_t part, uint64_t offset, uint64_t part_length,
                           std::vector<float> values) {
  chunk_encode_job job;
  job.round_id = round_id;
  job.part_index = part;
  job.offset = offset;
  job.part_length = part_length;
  job.values = std::move(values);
  return {round_id, member_set, static_cast<uint8_t>(phase), sender, run_chunk_job(job).blob, {}};
}

// Runs every coding job among `actions` and hands the results back, in order; returns what the
// round asked for meanwhile.
std::vector<round_action> code_all(butterfly_round& round, std::vector<round_action> actions) {
  std::vector<round_action> out;
  for (auto& action : actions) {
    if (auto* e = std::get_if<round_encode>(&action)) {
      auto more = code_all(round, round.chunk_coded(e->tag, run_chunk_job(e->job)));
      out.insert(out.end(), more.begin(), more.end());
    } else if (auto* d = std::get_if<round_decode>(&action)) {
      auto more = code_all(round, round.chunk_coded(d->tag, run_chunk_job(d->job)));
      out.insert(out.end(), more.begin(), more.end());
    } else {
      out.push_back(std::move(action));
    }
  }
  return out;
}

TEST(butterfly_round, start_codes_every_piece_for_the_other_reducers_and_keeps_its_own) {
  butterfly_round round(setup_of(3, 0, std::vector<float>(12, 1.0f), 2));
  const auto actions = round.start();
  const auto encodes = all_of<round_encode>(actions);
  // Parts of 4: two chunks each for members 1 and 2; our own part goes straight to the reducer.
  ASSERT_EQ(encodes.size(), 4u);
  for (const auto& e : encodes) {
    EXPECT_EQ(e.role, chunk_role::scatter_out);
    EXPECT_NE(e.member, 0u);
  }
  EXPECT_EQ(round.scatter_chunks(), 4u);
  const auto sends = all_of<round_send>(code_all(round, actions));
  ASSERT_EQ(sends.size(), 4u);
  EXPECT_EQ(sends[0].chunk.member_set, 0b111u);
  EXPECT_EQ(round.state(), butterfly_round::status::running);
}

TEST(butterfly_round, an_invalid_setup_fails_at_start) {
  auto setup = setup_of(2, 0, {1, 2}, 1);
  setup.members[1].weight = -1;
  butterfly_round round(std::move(setup));
  const auto failures = all_of<round_failure>(round.start());
  ASSERT_EQ(failures.size(), 1u);
  EXPECT_EQ(failures[0].why, round_failure::cause::invalid_setup);
  EXPECT_EQ(round.state(), butterfly_round::status::failed);
}

TEST(butterfly_round, a_chunk_of_another_round_is_rejected_and_drops_nobody) {
  butterfly_round round(setup_of(3, 0, std::vector<float>(12, 1.0f), 4));
  code_all(round, round.start());
  auto chunk = chunk_from(1, 0b111, allreduce_phase::scatter, 0, 0, 4, {1, 2, 3, 4});
  chunk.round_id = round_id + 1;
  const auto actions = round.chunk_arrived(chunk);
  const auto rejects = all_of<round_reject>(actions);
  ASSERT_EQ(rejects.size(), 1u);
  EXPECT_EQ(rejects[0].reason, "header");
  EXPECT_TRUE(all_of<round_restart>(actions).empty());
  EXPECT_EQ(round.member_set(), 0b111u);
}

TEST(butterfly_round, a_corrupt_chunk_drops_its_sender_and_restarts_without_it) {
  butterfly_round round(setup_of(3, 0, std::vector<float>(12, 1.0f), 4));
  code_all(round, round.start());
  auto chunk = chunk_from(2, 0b111, allreduce_phase::scatter, 0, 0, 4, {1, 2, 3, 4});
  chunk.blob.bytes[3] ^= 0x10;
  const auto actions = code_all(round, round.chunk_arrived(chunk));
  ASSERT_EQ(all_of<round_reject>(actions).size(), 1u);
  const auto restarts = all_of<round_restart>(actions);
  ASSERT_EQ(restarts.size(), 1u);
  EXPECT_EQ(restarts[0].member_set, 0b011u);
  EXPECT_EQ(round.restarts(), 1);
  // The new attempt cuts the vector in two and sends member 1 its half, with the new set.
  const auto sends = all_of<round_send>(actions);
  ASSERT_FALSE(sends.empty());
  for (const auto& s : sends) {
    EXPECT_EQ(s.to, 1u);
    EXPECT_EQ(s.chunk.member_set, 0b011u);
  }
  // A chunk of the larger set is stale now: ignored, not rejected.
  const auto stale = round.chunk_arrived(
    chunk_from(1, 0b111, allreduce_phase::scatter, 0, 0, 4, {1, 2, 3, 4}));
  EXPECT_TRUE(stale.empty());
}

TEST(butterfly_round, a_smaller_member_set_on_a_chunk_is_followed) {
  butterfly_round round(setup_of(3, 0, std::vector<float>(12, 1.0f), 6));
  code_all(round, round.start());
  const auto actions = code_all(
    round, round.chunk_arrived(chunk_from(1, 0b011, allreduce_phase::scatter, 0, 0, 6,
                                          {1, 2, 3, 4, 5, 6})));
  EXPECT_EQ(round.member_set(), 0b011u);
  EXPECT_EQ(all_of<round_restart>(actions).size(), 1u);
  EXPECT_TRUE(all_of<round_reject>(actions).empty());
}

// Seen in a swarm: a member that had already been dropped (it sent invalid data) kept sending
// chunks of its own smaller set; following them shrank an honest member's set to one that the
// others, done in the larger set, never joined.
TEST(butterfly_round, a_chunk_from_a_dropped_member_changes_nothing) {
  butterfly_round round(setup_of(4, 1, std::vector<float>(16, 1.0f), 4));
  code_all(round, round.start());
  auto bad = chunk_from(3, 0b1111, allreduce_phase::scatter, 1, 0, 4, {1, 2, 3, 4});
  bad.blob.bytes[3] ^= 0x10;
  code_all(round, round.chunk_arrived(bad));
  ASSERT_EQ(round.member_set(), 0b0111u);
  // Member 3 now sends as if member 2 were gone.
  const auto actions = code_all(
    round, round.chunk_arrived(chunk_from(3, 0b1011, allreduce_phase::scatter, 1, 0, 4,
                                          {1, 2, 3, 4})));
  EXPECT_TRUE(actions.empty());
  EXPECT_EQ(round.member_set(), 0b0111u);
}

// A member that finished in an attempt we have left (its group may stay for auditors, so no
// departure tells us) counts as gone: we do not wait for it until the deadline.
TEST(butterfly_round, a_member_that_finished_an_attempt_we_left_counts_as_gone) {
  butterfly_round round(setup_of(3, 1, std::vector<float>(12, 1.0f), 4));
  code_all(round, round.start());
  // Member 2 drops out of our attempt, member 0 finished with all three.
  code_all(round, round.member_gone(2));
  ASSERT_EQ(round.member_set(), 0b011u);
  const auto actions = code_all(round, round.digest_arrived(0, 0b111, 42));
  const auto done = all_of<round_done>(actions);
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0].group_size, 1u);
  // A digest of our own attempt's set is just early: nothing happens.
  butterfly_round other(setup_of(3, 1, std::vector<float>(12, 1.0f), 4));
  code_all(other, other.start());
  EXPECT_TRUE(code_all(other, other.digest_arrived(0, 0b111, 42)).empty());
  EXPECT_EQ(other.state(), butterfly_round::status::running);
}

TEST(butterfly_round, a_result_piece_that_comes_twice_is_rejected) {
  // Two members, 4 values, one chunk per part: member 1 reduces [2, 4).
  butterfly_round round(setup_of(2, 0, {1, 1, 1, 1}, 4));
  code_all(round, round.start());
  const auto result = chunk_from(1, 0b11, allreduce_phase::gather, 1, 0, 2, {5, 5});
  EXPECT_TRUE(all_of<round_reject>(code_all(round, round.chunk_arrived(result))).empty());
  const auto again = code_all(round, round.chunk_arrived(result));
  const auto rejects = all_of<round_reject>(again);
  ASSERT_EQ(rejects.size(), 1u);
  EXPECT_EQ(rejects[0].reason, "duplicate");
  // Without member 1 this member is alone: its own values, untouched.
  const auto done = all_of<round_done>(again);
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0].group_size, 1u);
  EXPECT_EQ(*done[0].values, (std::vector<float>{1, 1, 1, 1}));
}

TEST(butterfly_round, a_result_piece_at_an_offset_no_reducer_cuts_is_rejected) {
  butterfly_round round(setup_of(2, 0, {1, 1, 1, 1, 1, 1}, 2));
  code_all(round, round.start());
  // Member 1's part is [3, 6), cut into pieces at offsets 0 and 2; offset 1 is no piece.
  const auto actions =
    code_all(round, round.chunk_arrived(chunk_from(1, 0b11, allreduce_phase::gather, 1, 1, 3,
                                                   {5, 5})));
  ASSERT_EQ(all_of<round_reject>(actions).size(), 1u);
}

TEST(butterfly_round, a_member_gone_after_sending_everything_costs_nothing) {
  butterfly_round round(setup_of(2, 0, {1, 1, 1, 1}, 4));
  auto pending = round.start();  // our values for member 1's part, to be coded
  // Member 1's values for our part and its result arrive and wait at the coders...
  auto scatter = round.chunk_arrived(
    chunk_from(1, 0b11, allreduce_phase::scatter, 0, 0, 2, {3, 3}));
  auto gather = round.chunk_arrived(chunk_from(1, 0b11, allreduce_phase::gather, 1, 0, 2, {2, 2}));
  // ...when it leaves: nothing is missing that is not being decoded, so nothing restarts.
  EXPECT_TRUE(round.member_gone(1).empty());
  std::vector<round_action> actions;
  for (auto* batch : {&pending, &scatter, &gather}) {
    auto more = code_all(round, std::move(*batch));
    actions.insert(actions.end(), more.begin(), more.end());
  }
  EXPECT_TRUE(all_of<round_restart>(actions).empty());
  const auto done = all_of<round_done>(actions);
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0].group_size, 2u);
  // Weights 1 and 2: (1 * 1 + 2 * 3) / 3 on our part, member 1's result on its part.
  EXPECT_EQ(*done[0].values, (std::vector<float>{7.0f / 3, 7.0f / 3, 2, 2}));
  EXPECT_FALSE(round.awaiting_digests());  // the gone member sends no digest
}

// Members 2 and 3 reduce nothing (behind NAT). When member 3's link breaks before it sent
// anything, member 2 -- which needs nothing from member 3 -- restarts at once: the reducers miss
// member 3's values, and member 2 would otherwise learn of their restart only from results that
// never come. Had member 3 finished its round, its leaving costs nothing.
TEST(butterfly_round, a_member_without_a_part_restarts_when_another_leaves_unfinished) {
  auto setup = setup_of(4, 2, std::vector<float>(8, 1.0f), 4);
  setup.members[2].part_share = 0;
  setup.members[3].part_share = 0;
  {
    butterfly_round round(setup);
    code_all(round, round.start());
    const auto restarts = all_of<round_restart>(round.member_gone(3));
    ASSERT_EQ(restarts.size(), 1u);
    EXPECT_EQ(restarts[0].member_set, 0b0111u);
  }
  {
    butterfly_round round(setup);
    code_all(round, round.start());
    EXPECT_TRUE(all_of<round_restart>(round.member_gone(3, /*finished=*/true)).empty());
  }
}

TEST(butterfly_round, a_member_gone_with_data_missing_is_dropped) {
  butterfly_round round(setup_of(3, 0, std::vector<float>(6, 1.0f), 2));
  code_all(round, round.start());
  const auto actions = round.member_gone(2);
  const auto restarts = all_of<round_restart>(actions);
  ASSERT_EQ(restarts.size(), 1u);
  EXPECT_EQ(restarts[0].member_set, 0b011u);
}

TEST(butterfly_round, digests_are_compared_once_per_member) {
  butterfly_round round(setup_of(2, 0, {1, 1}, 4));
  auto actions = code_all(round, round.start());
  auto more = code_all(round, round.chunk_arrived(
                                chunk_from(1, 0b11, allreduce_phase::scatter, 0, 0, 1, {1})));
  actions.insert(actions.end(), more.begin(), more.end());
  more = code_all(round, round.chunk_arrived(
                           chunk_from(1, 0b11, allreduce_phase::gather, 1, 0, 1, {1})));
  actions.insert(actions.end(), more.begin(), more.end());
  const auto done = all_of<round_done>(actions);
  ASSERT_EQ(done.size(), 1u);
  EXPECT_TRUE(round.awaiting_digests());
  const auto checked =
    all_of<round_digest_checked>(round.digest_arrived(1, 0b11, done[0].digest + 1));
  ASSERT_EQ(checked.size(), 1u);
  EXPECT_FALSE(checked[0].matches);
  EXPECT_TRUE(round.digest_arrived(1, 0b11, done[0].digest).empty());
  EXPECT_TRUE(round.digest_arrived(7, 0b11, done[0].digest).empty());
  EXPECT_FALSE(round.awaiting_digests());
}

// A member whose link to one other broke may hear nothing more from the rest: their digest of a
// set without it ends its round at once (excluded), rather than at its deadline.
TEST(butterfly_round, a_digest_of_a_set_without_us_ends_the_round_as_excluded) {
  butterfly_round round(setup_of(4, 0, std::vector<float>(8, 1.0f), 2));
  code_all(round, round.start());
  // A digest of a set with us changes nothing while we run; one from outside its set neither.
  EXPECT_TRUE(round.digest_arrived(2, 0b1101, 7).empty());
  EXPECT_TRUE(round.digest_arrived(2, 0b1010, 7).empty());
  EXPECT_EQ(round.state(), butterfly_round::status::running);
  const auto failures = all_of<round_failure>(round.digest_arrived(2, 0b1100, 7));
  ASSERT_EQ(failures.size(), 1u);
  EXPECT_EQ(failures[0].why, round_failure::cause::excluded);
  EXPECT_EQ(round.state(), butterfly_round::status::failed);
}

// A chunk whose member set leaves out its own sender is malformed: its sender is dropped, and
// nobody is excluded by it.
TEST(butterfly_round, a_member_set_without_its_sender_drops_the_sender) {
  butterfly_round round(setup_of(3, 0, std::vector<float>(6, 1.0f), 2));
  code_all(round, round.start());
  const auto actions =
    round.chunk_arrived(chunk_from(1, 0b100, allreduce_phase::scatter, 0, 0, 2, {1, 1}));
  EXPECT_EQ(all_of<round_reject>(actions).size(), 1u);
  EXPECT_TRUE(all_of<round_failure>(actions).empty());
  EXPECT_EQ(round.member_set(), 0b101u);
  EXPECT_EQ(round.state(), butterfly_round::status::running);
}

// Two members that noticed different failures (each dropped another) make a third move to the
// intersection of their sets, whatever it heard first.
TEST(butterfly_round, members_that_dropped_different_members_meet_at_the_intersection) {
  butterfly_round round(setup_of(4, 2, std::vector<float>(8, 1.0f), 2));
  code_all(round, round.start());
  // Among {0, 2, 3} this member reduces the second part (index 1).
  auto restarts = all_of<round_restart>(code_all(
    round, round.chunk_arrived(chunk_from(0, 0b1101, allreduce_phase::scatter, 1, 0, 3, {1, 1}))));
  ASSERT_EQ(restarts.size(), 1u);
  EXPECT_EQ(round.member_set(), 0b1101u);
  // Member 1, dropped by member 0, has no say any more; member 3 dropped member 0 instead.
  EXPECT_TRUE(
    round.chunk_arrived(chunk_from(1, 0b1110, allreduce_phase::scatter, 1, 0, 4, {1, 1}))
      .empty());
  restarts = all_of<round_restart>(code_all(
    round, round.chunk_arrived(chunk_from(3, 0b1110, allreduce_phase::scatter, 1, 0, 4, {1, 1}))));
  ASSERT_EQ(restarts.size(), 1u);
  EXPECT_EQ(round.member_set(), 0b1100u);
  EXPECT_EQ(round.state(), butterfly_round::status::running);
}

TEST(butterfly_round, the_deadline_fails_a_running_round_and_nothing_after) {
  butterfly_round round(setup_of(2, 0, {1, 2, 3}, 4));
  code_all(round, round.start());
  const auto failures = all_of<round_failure>(round.deadline_passed());
  ASSERT_EQ(failures.size(), 1u);
  EXPECT_EQ(failures[0].why, round_failure::cause::deadline);
  EXPECT_TRUE(round.chunk_arrived(chunk_from(1, 0b11, allreduce_phase::gather, 1, 0, 2, {1, 1}))
                .empty());
  EXPECT_TRUE(round.deadline_passed().empty());
}

TEST(butterfly_round, values_that_will_not_encode_fail_the_round) {
  // The int8 codec refuses a non-finite value: nothing sensible can be sent.
  round_setup setup = setup_of(2, 0, {1, std::numeric_limits<float>::quiet_NaN(), 3, 4}, 4);
  setup.policy = chunk_policy("int8", {});
  butterfly_round coded(std::move(setup));
  const auto actions = code_all(coded, coded.start());
  const auto failures = all_of<round_failure>(actions);
  ASSERT_EQ(failures.size(), 1u);
  EXPECT_EQ(failures[0].why, round_failure::cause::unencodable_values);
}

TEST(butterfly_round, topk_gives_up_a_residual_that_would_overflow_instead_of_failing) {
  auto setup = setup_of(2, 0, {std::numeric_limits<float>::max(), 1, 1, 1}, 4);
  codec_options settings;
  settings.topk_fraction = 0.5;
  setup.policy = chunk_policy("topk", settings);
  setup.residual = {std::numeric_limits<float>::max(), 0, 0, 0};
  butterfly_round round(std::move(setup));
  const auto actions = code_all(round, round.start());
  EXPECT_TRUE(all_of<round_failure>(actions).empty());
  EXPECT_FALSE(all_of<round_send>(actions).empty());
}

TEST(butterfly_round, a_weight_far_above_the_median_is_clipped_alike_on_every_member) {
  // Member 2 claims 1e12 samples; the others 1, 2 and 4 (median 2): with a ratio of 8 it counts
  // as 16, on every member.
  for (uint32_t me : {0u, 2u}) {
    auto setup = setup_of(4, me, std::vector<float>(8, 1.0f), 8);
    setup.members[0].weight = 1;
    setup.members[1].weight = 2;
    setup.members[2].weight = 1e12;
    setup.members[3].weight = 4;
    setup.max_weight_ratio = 8;
    butterfly_round round(std::move(setup));
    const auto clipped = all_of<round_weight_clipped>(round.start());
    ASSERT_EQ(clipped.size(), 1u) << "member " << me;
    EXPECT_EQ(clipped[0].member, 2u);
    EXPECT_EQ(clipped[0].claimed, 1e12);
    EXPECT_EQ(clipped[0].used, 16);
  }
  auto unbounded = setup_of(2, 0, {1, 2}, 4);
  unbounded.members[1].weight = 1e12;
  butterfly_round round(std::move(unbounded));  // max_weight_ratio 0: no bound
  EXPECT_TRUE(all_of<round_weight_clipped>(round.start()).empty());
}

// ---- The chunk policy ------------------------------------------------------------------------

TEST(chunk_policy, adaptive_cuts_at_tensors_and_sends_small_tensors_exactly) {
  codec_options settings;
  settings.adaptive_exact_below = 100;
  auto bounds = std::make_shared<const std::vector<uint64_t>>(std::vector<uint64_t>{0, 10, 500});
  chunk_policy policy("adaptive", settings, bounds);
  const auto pieces = policy.pieces({5, 200});
  ASSERT_EQ(pieces.size(), 2u);
  EXPECT_EQ(pieces[0], (part_range{5, 10}));
  EXPECT_EQ(pieces[1], (part_range{10, 200}));
  EXPECT_EQ(policy.codec_for(pieces[0], 3, allreduce_phase::scatter).name, "none");
  EXPECT_EQ(policy.codec_for(pieces[1], 3, allreduce_phase::scatter).name, "int8");
  EXPECT_FALSE(policy.error_feedback());
}

TEST(chunk_policy, topk_keeps_room_for_every_senders_entries_in_the_gather) {
  codec_options settings;
  settings.topk_fraction = 0.01;
  chunk_policy policy("topk", settings);
  EXPECT_TRUE(policy.error_feedback());
  const part_range piece{0, 1000};
  EXPECT_DOUBLE_EQ(policy.codec_for(piece, 4, allreduce_phase::scatter).settings.topk_fraction,
                   0.01);
  // 10 entries kept per sender, 4 senders: room for 40 (plus rounding).
  EXPECT_NEAR(policy.codec_for(piece, 4, allreduce_phase::gather).settings.topk_fraction, 0.0405,
              1e-12);
  EXPECT_EQ(policy.pieces({3, 900}).size(), 1u);
}

} // namespace
} // namespace ddactor
