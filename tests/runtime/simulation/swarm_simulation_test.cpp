// The swarm simulator over a few hundred seeds at small N, with churn, loss, slow peers,
// partitions, cut links and lying reducers under audit: every invariant holds (a failing seed
// prints the command that replays it); a seed reproduces its run byte for byte; the checker
// reports a wrong round result; audits catch and ban liars.
#include "runtime/simulation/swarm_simulation.hpp"

#include <gtest/gtest.h>

#include <string>

namespace ddactor {
namespace {

swarm_simulation_config small_swarm(uint64_t seed) {
  swarm_simulation_config config;
  config.seed = seed;
  config.peers = 3 + seed % 6;  // 3 to 8 peers
  config.minutes = 3;
  config.vector_length = 48;
  config.chunk_elements = 16;
  config.group_size = 4 + seed % 5;  // sometimes smaller than the swarm: several groups
  config.joiners = (seed % 3) * 0.15;
  config.churn_per_minute = (seed % 4) * 0.1;
  config.restart_seconds = 10;
  config.loss = seed % 3 == 0 ? 0.02 : 0.0;
  config.slow_fraction = 0.2;
  config.greedy = seed % 5 == 1 ? 0.3 : 0.0;  // their claims are clipped; invariants still hold
  config.partition = seed % 5 == 0;
  // A partial partition: in small swarms a quarter of the pairs lose their link for a while.
  config.cut_links = seed % 7 == 3 ? 0.25 : 0.0;
  // Signed chunks and audits, with liars among the reducers (or without, where none may be
  // banned: invariant 6).
  config.liars = seed % 4 == 2 ? 0.25 : 0.0;
  config.audit_probability = seed % 4 == 2 ? 0.5 : seed % 4 == 3 ? 0.3 : 0.0;
  return config;
}

class swarm_seeds : public ::testing::TestWithParam<uint64_t> {};

TEST_P(swarm_seeds, every_invariant_holds) {
  constexpr uint64_t seeds_per_case = 8;
  for (uint64_t k = 0; k < seeds_per_case; ++k) {
    const auto config = small_swarm(GetParam() * seeds_per_case + k + 1);
    const auto report = run_swarm_simulation(config);
    EXPECT_TRUE(report.violations.empty())
      << report.text << "replay: " << replay_command(config);
    EXPECT_GT(report.rounds_averaged, 0u) << replay_command(config);
  }
}

// 25 cases of 8 seeds: 200 seeds.
INSTANTIATE_TEST_SUITE_P(seeds, swarm_seeds, ::testing::Range<uint64_t>(0, 25));

TEST(swarm_simulation, a_seed_reproduces_its_run_byte_for_byte) {
  auto config = small_swarm(12);
  config.peers = 12;
  config.churn_per_minute = 0.2;
  config.loss = 0.01;
  const auto first = run_swarm_simulation(config);
  const auto again = run_swarm_simulation(config);
  EXPECT_EQ(first.text, again.text);
  EXPECT_EQ(first.events, again.events);
  config.seed += 1;
  EXPECT_NE(run_swarm_simulation(config).text, first.text);
}

TEST(swarm_simulation, a_quiet_swarm_averages_every_round_in_one_group) {
  swarm_simulation_config config;
  config.peers = 10;
  config.minutes = 2;
  config.slow_fraction = 0;
  const auto report = run_swarm_simulation(config);
  EXPECT_TRUE(report.violations.empty()) << report.text;
  EXPECT_EQ(report.rounds_alone + report.rounds_failed + report.rounds_missed, 0u) << report.text;
  EXPECT_EQ(report.rounds_averaged % 10, 0u) << report.text;
  EXPECT_GE(report.epochs_per_minute, 4.0) << report.text;
  EXPECT_EQ(report.false_suspicions, 0u);
  EXPECT_GT(report.join_propagation_mean_seconds, 0.0);
}

TEST(swarm_simulation, the_checker_reports_a_wrong_round_result) {
  swarm_simulation_config config;
  config.peers = 4;
  config.minutes = 1;
  config.inject_wrong_result = true;
  const auto report = run_swarm_simulation(config);
  ASSERT_FALSE(report.violations.empty());
  EXPECT_NE(report.violations[0].find("weighted mean"), std::string::npos) << report.violations[0];
}

// A quarter of twelve peers lie about the parts they reduce. Audits catch them and the honest
// peers ban them, and go back on the rounds they caught them in; no honest peer is banned, and
// every other invariant holds (peers that report the same epoch and digest after a discard hold
// the same values).
TEST(swarm_simulation, audits_catch_and_ban_lying_reducers) {
  swarm_simulation_config config;
  config.seed = 5;
  config.peers = 12;
  config.minutes = 4;
  config.vector_length = 64;
  config.chunk_elements = 16;
  config.liars = 0.25;
  config.audit_probability = 0.3;
  const auto report = run_swarm_simulation(config);
  EXPECT_TRUE(report.violations.empty()) << report.text << replay_command(config);
  EXPECT_GT(report.lies_caught, 0u) << report.text;
  EXPECT_GT(report.bans, 0u) << report.text;
  EXPECT_GT(report.poisoned_parts, 0u) << report.text;  // before they were caught
  EXPECT_GT(report.discarded_rounds, 0u) << report.text;
  EXPECT_GT(report.discarded_parts, 0u) << report.text;
  EXPECT_LE(report.discarded_parts, report.poisoned_parts) << report.text;
  EXPECT_NE(report.text.find("liars "), std::string::npos);
  // The same swarm without audits: poisoned parts in every round the liars reduce.
  auto unaudited = config;
  unaudited.audit_probability = 0;
  const auto without = run_swarm_simulation(unaudited);
  EXPECT_GT(without.poisoned_parts, 2 * report.poisoned_parts) << without.text << report.text;
}

} // namespace
} // namespace ddactor
