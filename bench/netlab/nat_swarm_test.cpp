// Real ddactor peers in the network lab, some behind home routers (NAT with a stateful firewall:
// nothing from outside reaches them). No peer is told its address (network.announce unset): the
// first announces its machine's address, each other asks its initial peer. The reachable ones
// learn they are reachable, the NATed ones that they are not; the NATed ones reach each other
// through relays on the reachable ones and reduce no part of any round; losing a relay moves
// their link to the other, and a NATed peer joining late downloads the state. Weights stay
// bit-identical. Needs root (skips without it, as the lab's other tests).
#include <gtest/gtest.h>

#include <csignal>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <regex>
#include <thread>

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

// A lab whose hosts marked in `behind_nat` sit behind NAT routers (100 Mbit/s links), a folder
// for its logs with the swarm's config in it, and the swarm key in the environment; no lab (and
// `skipped` says why) where the lab cannot be made (no root).
struct nat_lab {
  std::unique_ptr<netlab> lab;
  std::filesystem::path dir, config;
  std::string skipped;
};

nat_lab open_nat_lab(std::vector<bool> behind_nat, const std::string& name) {
  nat_lab made;
  netlab_options options;
  const int hosts = static_cast<int>(behind_nat.size());
  options.behind_nat = std::move(behind_nat);
  options.rate_mbit = 100;
  options.log_directory = kept_lab_logs(name);
  try {
    netlab::cleanup_stale("ddl");
    made.lab = std::make_unique<netlab>(hosts, options);
  } catch (const netlab_unavailable& e) {
    made.skipped = e.what();
    return made;
  }
  made.dir = made.lab->options().log_directory / "nat_swarm";
  std::filesystem::create_directories(made.dir);
  made.config = made.dir / "swarm.toml";
  std::ofstream(made.config) << swarm_config;
  ::setenv("DDACTOR_SWARM_KEY", lab_swarm_key, 1);
  return made;
}

TEST(nat_swarm, peers_behind_nat_discover_it_and_train_through_relays) {
  auto made = open_nat_lab({false, false, true, true}, "nat_swarm");
  if (!made.lab)
    GTEST_SKIP() << "skipped: " << made.skipped;
  auto& lab = made.lab;
  const auto& dir = made.dir;
  const auto& config = made.config;
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

// Waits until `log` contains `text` (false after `timeout`).
bool log_shows(const std::filesystem::path& log, const std::string& text,
               std::chrono::seconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (read_text(log).find(text) != std::string::npos)
      return true;
    std::this_thread::sleep_for(100ms);
  }
  return false;
}

// Behind real routers: 2 reachable and 2 NATed peers train; the first reachable peer (the
// bootstrap and a relay of both NATed ones) is killed, and their link to each other moves to
// the other relay; then a third NATed peer joins late through the one reachable peer left and
// downloads the state. One reachable peer carries three behind NAT to the end, bit-identical.
TEST(nat_swarm, natted_peers_outlive_their_relay_and_a_late_natted_peer_downloads_the_state) {
  auto made = open_nat_lab({false, false, true, true, true}, "nat_swarm_relay_loss");
  if (!made.lab)
    GTEST_SKIP() << "skipped: " << made.skipped;
  auto& lab = made.lab;
  const auto& dir = made.dir;
  const auto& config = made.config;
  // Epochs of 4096 samples (half a second): a relay's death must stay small next to an epoch,
  // as it is in real runs, and the late peer must find the swarm still training.
  auto log_of = [&](int i) { return dir / ("peer" + std::to_string(i) + ".log"); };
  auto start = [&](int i, const std::string& initial_peer, std::vector<std::string> extra) {
    auto argv = lab_peer_argv(config, dir / ("peer" + std::to_string(i)));
    argv.insert(argv.end(), {"--set", "train.steps=36", "--set", "train.target_batch_size=4096",
                             "--set", "train.checkpoint_every=4", "--set",
                             "train.keep_checkpoints=20"});
    if (!initial_peer.empty())
      argv.insert(argv.end(), {"--set", "network.initial_peers=[\"" + initial_peer + "\"]"});
    argv.insert(argv.end(), extra.begin(), extra.end());
    return lab->spawn(i, argv, log_of(i));
  };
  std::vector<pid_t> pids;
  pids.push_back(start(0, "", {}));
  ASSERT_TRUE(log_shows(log_of(0), "listening for peers", 30s)) << read_text(log_of(0));
  for (int i = 1; i < 4; ++i)
    pids.push_back(start(i, lab->address(0) + ":7000", {}));
  ASSERT_TRUE(log_shows(log_of(2), "epoch 10/36", 180s)) << read_text(log_of(2));
  ::kill(pids[0], SIGKILL);
  ASSERT_EQ(lab->wait(pids[0], 10s), 128 + SIGKILL);
  pids.push_back(start(4, lab->address(1) + ":7000", {"--set", "network.wait_for_peers=1"}));
  std::vector<std::string> logs(5);
  for (int i = 1; i < 5; ++i) {
    auto code = lab->wait(pids[static_cast<size_t>(i)], 240s);
    logs[static_cast<size_t>(i)] = read_text(log_of(i));
    ASSERT_TRUE(code.has_value()) << "peer " << i << " did not finish:\n"
                                  << logs[static_cast<size_t>(i)];
    EXPECT_EQ(*code, 0) << logs[static_cast<size_t>(i)];
  }
  // Before the kill the four were one model; after it, peers 2 and 3 still averaged together
  // (their link through peer 1's relay), and the late one joined them.
  const auto at_8 = shared_state_tensors(checkpoint_path(dir / "peer0", 8));
  ASSERT_FALSE(at_8.empty());
  for (int i = 1; i < 4; ++i)
    EXPECT_TRUE(shared_state_tensors(checkpoint_path(dir / ("peer" + std::to_string(i)), 8)) ==
                at_8)
      << "peer " << i << " differs at epoch 8";
  // After peer 2 saw peer 0 die, a round of all four survivors: the two NATed peers of the
  // start reached each other through the relay left.
  const auto after_kill = logs[2].find("(" + lab->address(0) + ":7000) died");
  ASSERT_NE(after_kill, std::string::npos) << logs[2];
  EXPECT_NE(logs[2].find("group of 4", after_kill), std::string::npos) << logs[2];
  EXPECT_NE(logs[4].find("see this peer at " + lab->address(4) +
                         "; 0 of 1 could connect back: not reachable"),
            std::string::npos)
    << logs[4];
  EXPECT_NE(logs[4].find("downloaded the state of epoch"), std::string::npos) << logs[4];
  EXPECT_NE(logs[4].find("group of 4"), std::string::npos) << logs[4];
  const auto reference = shared_state_tensors(checkpoint_path(dir / "peer1", 36));
  ASSERT_FALSE(reference.empty());
  for (int i = 2; i < 5; ++i)
    EXPECT_TRUE(shared_state_tensors(checkpoint_path(dir / ("peer" + std::to_string(i)), 36)) ==
                reference)
      << "peer " << i << " differs at epoch 36";
}

} // namespace
} // namespace ddactor
