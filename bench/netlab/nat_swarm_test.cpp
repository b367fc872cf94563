// Real ddactor peers in the network lab, two of them behind home routers (NAT with a stateful
// firewall: nothing from outside reaches them). No peer is told its address (network.announce
// unset): the first announces its machine's address, each other asks its initial peer. The
// reachable ones learn they are reachable, the NATed ones that they are not; the NATed ones
// reach each other through relays on the reachable ones, reduce no part of any round, and all
// four end with identical weights. Needs root (skips without it, as the lab's other tests).
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <memory>
#include <regex>

#include "bench/netlab/lab_swarm.hpp"
#include "bench/netlab/netlab.hpp"
#include "runtime/checkpoint_files.hpp"

namespace ddactor {
namespace {

using namespace std::chrono_literals;

// A tiny model and short timeouts: the test is about the network, not the model.
constexpr const char* swarm_config = R"(
[run]
name = "nat-swarm"
threads = 1
[model]
hidden_size = 32
depth = 1
num_heads = 2
patch_size = 7
[data]
batch_size = 16
prefetch = 2
[train]
steps = 12
target_batch_size = 64
warmup_steps = 2
log_every = 1
checkpoint_every = 6
sample_every = 0
[sample]
steps = 1
per_class = 1
[network]
gossip_interval = 0.3
suspect_after = 3.0
remove_after = 6.0
heartbeat_interval = 0.2
connection_timeout = 3.0
connect_timeout = 4.0
wait_for_peers = 4
[averaging]
matchmaking_time = 2.0
allreduce_timeout = 15.0
chunk_elements = 4096
)";

TEST(nat_swarm, peers_behind_nat_discover_it_and_train_through_relays) {
  std::unique_ptr<netlab> lab;
  netlab_options options;
  options.behind_nat = {false, false, true, true};
  options.rate_mbit = 100;
  options.log_directory = kept_lab_logs("nat_swarm");
  try {
    netlab::cleanup_stale("ddl");
    lab = std::make_unique<netlab>(4, options);
  } catch (const netlab_unavailable& e) {
    GTEST_SKIP() << "skipped: " << e.what();
  }
  const auto dir = lab->options().log_directory / "nat_swarm";
  std::filesystem::create_directories(dir);
  const auto config = dir / "swarm.toml";
  std::ofstream(config) << swarm_config;
  ::setenv("DDACTOR_SWARM_KEY", lab_swarm_key, 1);
  const std::string bootstrap = lab->address(0) + ":7000";
  std::vector<pid_t> pids;
  for (int i = 0; i < 4; ++i) {
    auto argv = lab_peer_argv(config, dir / ("peer" + std::to_string(i)));
    // The swarm's first peer has nobody to ask: it announces its own machine's address.
    if (i > 0)
      argv.insert(argv.end(), {"--set", "network.initial_peers=[\"" + bootstrap + "\"]"});
    pids.push_back(lab->spawn(i, argv, dir / ("peer" + std::to_string(i) + ".log")));
    if (i == 0)
      std::this_thread::sleep_for(2s);
  }
  std::vector<std::string> logs(4);
  for (int i = 0; i < 4; ++i) {
    auto code = lab->wait(pids[static_cast<size_t>(i)], 240s);
    logs[static_cast<size_t>(i)] = read_text(dir / ("peer" + std::to_string(i) + ".log"));
    ASSERT_TRUE(code.has_value()) << "peer " << i << " did not finish:\n"
                                  << logs[static_cast<size_t>(i)];
    EXPECT_EQ(*code, 0) << logs[static_cast<size_t>(i)];
  }
  // Discovery: what each was told about itself, and what the first peer found on its own.
  EXPECT_NE(logs[0].find("announcing " + lab->address(0) + ", this machine's address"),
            std::string::npos)
    << logs[0];
  EXPECT_NE(logs[1].find("see this peer at " + lab->address(1) + "; 1 of 1 could connect "
                         "back: reachable"),
            std::string::npos)
    << logs[1];
  for (int i : {2, 3})
    EXPECT_NE(logs[static_cast<size_t>(i)].find("see this peer at " + lab->address(i) +
                                                 "; 0 of 1 could connect back: not reachable"),
              std::string::npos)
      << logs[static_cast<size_t>(i)];
  // The NATed peers held relays, and the two reduced nothing.
  for (int i : {2, 3})
    EXPECT_NE(logs[static_cast<size_t>(i)].find("reachable through 2 relay(s)"), std::string::npos)
      << logs[static_cast<size_t>(i)];
  const std::regex nat_parts(R"(parts by link rate:[^(]*\(Mbit/s:[^)]*NAT[^)]*NAT)");
  int nat_groups = 0;
  for (auto& log : logs)
    nat_groups += std::regex_search(log, nat_parts) ? 1 : 0;
  EXPECT_GE(nat_groups, 1) << logs[0];
  // One model: the final checkpoints hold the same weights and optimizer state, bit for bit.
  const auto reference = shared_state_tensors(checkpoint_path(dir / "peer0", 12));
  ASSERT_FALSE(reference.empty());
  for (int i = 1; i < 4; ++i)
    EXPECT_TRUE(shared_state_tensors(checkpoint_path(dir / ("peer" + std::to_string(i)), 12)) ==
                reference)
      << "peer " << i << " differs";
}

} // namespace
} // namespace ddactor
