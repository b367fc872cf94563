// Audits of reducers: a group of members runs a real round in-process (signed chunks, evidence
// kept), then every member audits every other reducer with the evidence that reducer shows.
// Honest rounds pass with every codec and with CenteredClip; a reducer that sends everyone the
// same wrong result (digests agree) is caught; forged, unsigned, misplaced or repeated evidence
// is refused. An auditor's proof of a lie (the inputs it checked) convinces the other members
// without the liar; a proof that does not check out is refused.
#include "runtime/allreduce/reducer_audit.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <deque>
#include <memory>
#include <random>
#include <vector>

#include "runtime/allreduce/butterfly_round.hpp"
#include "runtime/secure/peer_key.hpp"

namespace ddactor {
namespace {

struct group_run {
  std::vector<std::unique_ptr<butterfly_round>> rounds;
  std::vector<std::shared_ptr<const std::vector<float>>> results;
  std::vector<uint64_t> digests;
  std::vector<round_reject> rejects;
};

struct run_settings {
  std::size_t members = 4;
  std::size_t length = 1000;
  std::size_t chunk_elements = 128;
  std::string codec = "none";
  aggregation_settings aggregation;
  int liar = -1;           // this member negates its part's result before encoding it
  int unsigned_from = -1;  // this member's chunks carry no signature
};

std::vector<std::shared_ptr<const peer_key>> keys_for(std::size_t n) {
  std::vector<std::shared_ptr<const peer_key>> keys;
  for (std::size_t m = 0; m < n; ++m) {
    std::array<uint8_t, 32> seed{};
    seed[0] = static_cast<uint8_t>(m + 1);
    keys.push_back(std::make_shared<const peer_key>(peer_key::from_seed(seed)));
  }
  return keys;
}

group_run run_group(const run_settings& settings) {
  const auto keys = keys_for(settings.members);
  std::mt19937 gen(7);
  std::normal_distribution<float> normal;
  group_run run;
  for (uint32_t me = 0; me < settings.members; ++me) {
    round_setup setup;
    setup.round_id = 99;
    for (std::size_t m = 0; m < settings.members; ++m)
      setup.members.push_back({static_cast<double>(10 + m), 1, {},
                               peer_id_of(keys[m]->public_part())});
    setup.me = me;
    std::vector<float> values(settings.length);
    for (auto& v : values)
      v = normal(gen);
    setup.values = std::make_shared<const std::vector<float>>(std::move(values));
    setup.chunk_elements = settings.chunk_elements;
    setup.aggregation = settings.aggregation;
    setup.policy = chunk_policy(settings.codec, codec_options{});
    if (static_cast<int>(me) != settings.unsigned_from)
      setup.signer = keys[me];
    setup.check_signatures = true;
    setup.keep_evidence = true;
    run.rounds.push_back(std::make_unique<butterfly_round>(std::move(setup)));
  }
  run.results.resize(settings.members);
  run.digests.resize(settings.members);
  std::deque<std::pair<uint32_t, round_action>> queue;
  auto push = [&](uint32_t member, std::vector<round_action> actions) {
    for (auto& action : actions)
      queue.emplace_back(member, std::move(action));
  };
  for (uint32_t m = 0; m < settings.members; ++m)
    push(m, run.rounds[m]->start());
  while (!queue.empty()) {
    auto [member, action] = std::move(queue.front());
    queue.pop_front();
    auto& round = *run.rounds[member];
    if (auto* encode = std::get_if<round_encode>(&action)) {
      if (encode->role == chunk_role::gather_out && static_cast<int>(member) == settings.liar)
        for (auto& v : encode->job.own_values())
          v = -v;
      push(member, round.chunk_coded(encode->tag, run_chunk_job(std::move(encode->job))));
    } else if (auto* decode = std::get_if<round_decode>(&action)) {
      push(member, round.chunk_coded(decode->tag, run_chunk_job(std::move(decode->job))));
    } else if (auto* send = std::get_if<round_send>(&action)) {
      push(send->to, run.rounds[send->to]->chunk_arrived(std::move(send->chunk)));
    } else if (auto* done = std::get_if<round_done>(&action)) {
      run.results[member] = done->values;
      run.digests[member] = done->digest;
    } else if (auto* reject = std::get_if<round_reject>(&action)) {
      run.rejects.push_back(*reject);
    }
  }
  return run;
}

// Auditor `auditor` checks `reducer` with the evidence the reducer shows.
audit_finding audit(group_run& run, uint32_t auditor, uint32_t reducer) {
  auto plan = run.rounds[auditor]->audit_plan_for(reducer, *run.results[auditor]);
  if (!plan)
    return {false, "no plan"};
  const auto member_set = plan->member_set;
  reducer_audit check(std::move(*plan));
  for (const auto& evidence : run.rounds[reducer]->audit_evidence_of_our_part(member_set))
    if (auto refused = check.add(evidence))
      return {false, "refused: " + *refused};
  return check.verdict();
}

void expect_every_audit_passes(const run_settings& settings) {
  auto run = run_group(settings);
  for (uint32_t m = 0; m < settings.members; ++m) {
    ASSERT_EQ(run.rounds[m]->state(), butterfly_round::status::done) << settings.codec;
    EXPECT_EQ(run.digests[m], run.digests[0]);
  }
  EXPECT_TRUE(run.rejects.empty());
  for (uint32_t auditor = 0; auditor < settings.members; ++auditor) {
    const auto reducers = run.rounds[auditor]->reducers_of_last_attempt();
    EXPECT_EQ(reducers.size(), settings.members - 1);
    for (auto reducer : reducers) {
      const auto finding = audit(run, auditor, reducer);
      EXPECT_TRUE(finding.honest) << settings.codec << " auditor " << auditor << " reducer "
                                  << reducer << ": " << finding.detail;
    }
  }
}

TEST(reducer_audit, honest_reducers_pass_with_every_codec) {
  for (const char* codec : {"none", "fp16", "bf16", "int8", "topk", "adaptive"}) {
    run_settings settings;
    settings.codec = codec;
    expect_every_audit_passes(settings);
  }
}

TEST(reducer_audit, honest_reducers_pass_with_centered_clip) {
  run_settings settings;
  settings.members = 5;
  settings.aggregation.rule = aggregation_settings::kind::centered_clip;
  expect_every_audit_passes(settings);
  settings.codec = "int8";
  expect_every_audit_passes(settings);
}

TEST(reducer_audit, a_reducer_that_sends_everyone_the_same_wrong_result_is_caught) {
  for (const char* codec : {"none", "bf16", "int8"}) {
    run_settings settings;
    settings.codec = codec;
    settings.liar = 2;
    auto run = run_group(settings);
    // Every member applied the same poisoned part: digests agree, so only an audit can tell.
    for (uint32_t m = 0; m < settings.members; ++m)
      EXPECT_EQ(run.digests[m], run.digests[0]);
    for (uint32_t auditor : {0u, 1u, 3u}) {
      const auto liar = audit(run, auditor, 2);
      EXPECT_FALSE(liar.honest) << codec;
      EXPECT_NE(liar.detail.find("away from what its inputs give"), std::string::npos)
        << liar.detail;
      for (uint32_t reducer : {0u, 1u, 3u}) {
        if (reducer != auditor) {
          EXPECT_TRUE(audit(run, auditor, reducer).honest) << codec;
        }
      }
    }
  }
}

TEST(reducer_audit, evidence_that_was_not_signed_as_sent_is_refused) {
  auto run = run_group({});
  auto plan = run.rounds[0]->audit_plan_for(1, *run.results[0]);
  ASSERT_TRUE(plan);
  const auto evidence = run.rounds[1]->audit_evidence_of_our_part(plan->member_set);
  ASSERT_EQ(evidence.size(), reducer_audit(*plan).expected());
  {
    // A value changed after its sender signed it (a reducer making its inputs fit).
    reducer_audit check(*plan);
    auto forged = evidence[0];
    forged.blob.bytes[5] ^= 1;
    seal(forged.blob);
    ASSERT_TRUE(check.add(forged));
  }
  {
    // Another sender's signature, or none.
    reducer_audit check(*plan);
    auto swapped = evidence[0];
    for (const auto& other : evidence)
      if (other.sender != swapped.sender)
        swapped.proof = other.proof;
    EXPECT_TRUE(check.add(swapped));
    auto bare = evidence[0];
    bare.proof = {};
    EXPECT_TRUE(check.add(bare));
  }
  {
    // The same piece twice, a piece of another part, another round.
    reducer_audit check(*plan);
    EXPECT_FALSE(check.add(evidence[0]));
    EXPECT_TRUE(check.add(evidence[0]));
    auto other_round = evidence[1];
    other_round.round_id += 1;
    EXPECT_TRUE(check.add(other_round));
    auto outsider = evidence[1];
    outsider.sender = 9;
    EXPECT_TRUE(check.add(outsider));
  }
  {
    // Incomplete evidence is no verdict of honesty.
    reducer_audit check(*plan);
    for (std::size_t i = 0; i + 1 < evidence.size(); ++i)
      EXPECT_FALSE(check.add(evidence[i]));
    EXPECT_FALSE(check.complete());
    EXPECT_FALSE(check.verdict().honest);
  }
}

TEST(reducer_audit, a_reducer_refuses_unsigned_chunks_and_drops_their_sender) {
  run_settings settings;
  settings.unsigned_from = 3;
  auto run = run_group(settings);
  ASSERT_FALSE(run.rejects.empty());
  for (const auto& reject : run.rejects) {
    EXPECT_EQ(reject.sender, 3u);
    EXPECT_EQ(reject.reason, "invalid");
  }
  for (uint32_t m = 0; m < 3; ++m) {
    ASSERT_EQ(run.rounds[m]->state(), butterfly_round::status::done);
    EXPECT_EQ(run.rounds[m]->member_set(), 0b0111u);
  }
}

TEST(reducer_audit, a_reducer_shows_no_evidence_of_an_attempt_it_did_not_finish_reducing) {
  auto run = run_group({});
  const auto set = run.rounds[1]->member_set();
  EXPECT_FALSE(run.rounds[1]->audit_evidence_of_our_part(set).empty());
  EXPECT_TRUE(run.rounds[1]->audit_evidence_of_our_part(set & ~1u).empty());  // no such attempt
}

TEST(reducer_audit, an_audit_of_a_few_sampled_pieces_needs_only_their_evidence) {
  run_settings settings;
  settings.liar = 1;
  settings.chunk_elements = 32;  // parts of 250 in 8 pieces
  auto run = run_group(settings);
  auto plan = run.rounds[0]->audit_plan_for(1, *run.results[0]);
  ASSERT_TRUE(plan);
  ASSERT_EQ(plan->pieces.size(), 8u);
  const auto sampled = sample_pieces(*plan, 2, 7);
  ASSERT_EQ(sampled.pieces.size(), 2u);
  EXPECT_LT(sampled.pieces[0].begin, sampled.pieces[1].begin);
  for (const auto& piece : sampled.pieces)
    EXPECT_NE(std::find(plan->pieces.begin(), plan->pieces.end(), piece), plan->pieces.end());
  EXPECT_EQ(sample_pieces(*plan, 2, 7).pieces, sampled.pieces);  // the seed decides
  EXPECT_EQ(sample_pieces(*plan, 99, 7).pieces, plan->pieces);
  reducer_audit check(sampled);
  std::size_t shown = 0;
  for (const auto& evidence : run.rounds[1]->audit_evidence_of_our_part(plan->member_set))
    if (check.wants(evidence)) {
      EXPECT_FALSE(check.add(evidence));
      ++shown;
    }
  EXPECT_EQ(shown, 2 * settings.members);
  ASSERT_TRUE(check.complete());
  EXPECT_FALSE(check.verdict().honest);  // the liar negated every piece
}

// The proof an auditor forwards: the sampled inputs its audit accepted.
std::vector<audit_evidence> proof_of(group_run& run, uint32_t auditor, uint32_t reducer) {
  auto plan = run.rounds[auditor]->audit_plan_for(reducer, *run.results[auditor]);
  EXPECT_TRUE(plan);
  reducer_audit check(sample_pieces(*plan, 2, 11));
  for (const auto& evidence : run.rounds[reducer]->audit_evidence_of_our_part(plan->member_set))
    if (check.wants(evidence)) {
      EXPECT_FALSE(check.add(evidence));
    }
  EXPECT_TRUE(check.complete());
  return check.evidence();
}

proof_finding check_proof(group_run& run, uint32_t member, uint32_t reducer,
                          const std::vector<audit_evidence>& proof) {
  auto plan = run.rounds[member]->audit_plan_for(reducer, *run.results[member]);
  EXPECT_TRUE(plan);
  return check_accusation_proof(std::move(*plan), proof);
}

TEST(reducer_audit, an_auditors_proof_convinces_the_other_members_without_the_liar) {
  run_settings settings;
  settings.liar = 2;
  settings.chunk_elements = 32;
  auto run = run_group(settings);
  const auto proof = proof_of(run, 0, 2);
  EXPECT_EQ(proof.size(), 2 * settings.members);
  for (uint32_t member : {1u, 3u}) {
    const auto finding = check_proof(run, member, 2, proof);
    EXPECT_EQ(finding.result, proof_finding::kind::confirmed) << finding.detail;
    EXPECT_NE(finding.detail.find("away from what its inputs give"), std::string::npos);
  }
  // The same inputs of an honest reducer's part prove nothing against it, for another member
  // or for the accused itself (which checks a proof against its own part).
  const auto honest = proof_of(run, 0, 1);
  EXPECT_EQ(check_proof(run, 3, 1, honest).result, proof_finding::kind::contradicted);
  EXPECT_EQ(check_proof(run, 1, 1, honest).result, proof_finding::kind::contradicted);
  auto forged = honest;
  forged[0].blob.bytes[3] ^= 1;
  seal(forged[0].blob);
  EXPECT_EQ(check_proof(run, 1, 1, forged).result, proof_finding::kind::refused);
}

TEST(reducer_audit, a_proof_that_does_not_check_out_is_refused) {
  run_settings settings;
  settings.liar = 2;
  settings.chunk_elements = 32;
  auto run = run_group(settings);
  const auto proof = proof_of(run, 0, 2);
  auto refused = [&](const std::vector<audit_evidence>& forged, const char* why) {
    const auto finding = check_proof(run, 1, 2, forged);
    EXPECT_EQ(finding.result, proof_finding::kind::refused) << why << ": " << finding.detail;
  };
  refused({}, "empty");
  refused({proof.begin(), proof.end() - 1}, "an input missing");
  auto repeated = proof;
  repeated.back() = repeated.front();
  refused(repeated, "an input twice");
  auto altered = proof;
  altered[1].blob.bytes[5] ^= 1;  // the accuser making the inputs fit its accusation
  seal(altered[1].blob);
  refused(altered, "an input its sender did not sign");
  auto misplaced = proof;
  misplaced[0].blob.offset += 1;
  refused(misplaced, "a piece the part does not have");
  // An honest reducer's inputs shown as another's: pieces of another part.
  refused(proof_of(run, 0, 1), "another part's inputs");
}

TEST(reducer_audit, the_codec_tolerance_allows_rounding_but_not_a_shift) {
  std::vector<float> reduced(256);
  for (std::size_t i = 0; i < reduced.size(); ++i)
    reduced[i] = std::sin(static_cast<float>(i));
  const chunk_codec int8{"int8", {}};
  chunk_encode_job job;
  job.part_length = reduced.size();
  job.values = reduced;
  job.codec = int8;
  job.decode_back = true;
  const auto sent = run_chunk_job(job).values;
  EXPECT_TRUE(matches_within_codec_error(sent, reduced, int8));
  auto shifted = sent;
  for (auto& v : shifted)
    v *= 1.2f;
  EXPECT_FALSE(matches_within_codec_error(shifted, reduced, int8));
  EXPECT_TRUE(matches_within_codec_error(reduced, reduced, chunk_codec{}));
  auto nudged = reduced;
  nudged[3] += 1e-3f;
  EXPECT_FALSE(matches_within_codec_error(nudged, reduced, chunk_codec{}));
}

} // namespace
} // namespace ddactor
