// Eight real ddactor peers on links as the internet has them: each host's access link has its
// own delay (round trips to the core from 10 to 300 ms), jitter, 0.5% packet loss and an
// upload five times slower than its download. With the default membership and transport
// timeouts (no test-tuned ones), all eight must form one group in their first round, finish 20
// epochs with nobody suspected (every peer is up all along, so any suspicion is a false one)
// and end with identical weights. Needs root (skips without it, as the lab's other tests).
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

// A small model (0.9 MB of weights: each round moves 1.6 MB through every upload, seconds at
// 10 Mbit/s) and the default averaging, membership and transport settings.
constexpr const char* internet_config = R"(
[run]
name = "internet-swarm"
threads = 1
[model]
hidden_size = 96
depth = 1
num_heads = 2
patch_size = 7
[data]
batch_size = 8
prefetch = 2
[train]
steps = 20
target_batch_size = 64
warmup_steps = 2
log_every = 1
checkpoint_every = 10
sample_every = 0
[sample]
steps = 1
per_class = 1
[network]
reachable = "yes"
wait_for_peers = 8
)";

constexpr int peers = 8;

TEST(internet_swarm, eight_peers_on_slow_lossy_jittery_links_train_with_no_false_suspicion) {
  std::unique_ptr<netlab> lab;
  netlab_options options;
  options.rate_mbit = 50;
  options.host_upload_mbit.assign(peers, 10);
  // One-way access delays: round trips to the core from 10 to 300 ms.
  options.host_delay_ms = {5, 150, 12, 90, 25, 120, 40, 60};
  options.jitter_ms = 10;
  options.loss_percent = 0.5;
  options.queue_ms = 100;  // a home router's upload buffer
  options.delay_mode = netlab_delay_mode::relay;
  options.log_directory = kept_lab_logs("internet_swarm");
  try {
    netlab::cleanup_stale("ddl");
    lab = std::make_unique<netlab>(peers, options);
  } catch (const netlab_unavailable& e) {
    GTEST_SKIP() << "skipped: " << e.what();
  }
  const auto dir = lab->options().log_directory / "internet_swarm";
  std::filesystem::create_directories(dir);
  const auto config = dir / "swarm.toml";
  std::ofstream(config) << internet_config;
  ::setenv("DDACTOR_SWARM_KEY", lab_swarm_key, 1);
  // Peers announce their relay's port: every connection into a host crosses its delays.
  std::vector<std::string> announced;
  for (int i = 0; i < peers; ++i)
    announced.push_back(lab->address(i) + ":" + std::to_string(lab->add_relay(i, 7000)));
  std::vector<pid_t> pids;
  for (int i = 0; i < peers; ++i) {
    auto argv = lab_peer_argv(config, dir / ("peer" + std::to_string(i)));
    argv.insert(argv.end(), {"--set", "network.announce=\"" + announced[i] + "\""});
    if (i > 0)
      argv.insert(argv.end(),
                  {"--set", "network.initial_peers=[\"" + announced[(i - 1) / 2] + "\"]"});
    pids.push_back(lab->spawn(i, argv, dir / ("peer" + std::to_string(i) + ".log")));
    if (i == 0)
      std::this_thread::sleep_for(2s);
  }
  std::vector<std::string> logs(peers);
  for (int i = 0; i < peers; ++i) {
    const auto code = lab->wait(pids[static_cast<size_t>(i)], 360s);
    logs[static_cast<size_t>(i)] = read_text(dir / ("peer" + std::to_string(i) + ".log"));
    ASSERT_TRUE(code.has_value()) << "peer " << i << " did not finish:\n"
                                  << logs[static_cast<size_t>(i)];
    EXPECT_EQ(*code, 0) << logs[static_cast<size_t>(i)];
  }
  uint64_t dropped = 0;
  for (int i = 0; i < peers; ++i)
    dropped += lab->dropped_packets(i);
  EXPECT_GT(dropped, 0u) << "the links lost nothing: the test did not test loss";
  // Each peer's log line after its first round says with whom it averaged.
  const std::regex first_round(R"(epoch 1/20 \|[^\n]*last round: (group|alone) of (\d+))");
  for (int i = 0; i < peers; ++i) {
    const auto& log = logs[static_cast<size_t>(i)];
    SCOPED_TRACE("peer " + std::to_string(i));
    EXPECT_EQ(log.find("suspected: silent"), std::string::npos) << log;
    EXPECT_EQ(log.find("ms of silence"), std::string::npos) << log;
    std::smatch group;
    ASSERT_TRUE(std::regex_search(log, group, first_round)) << log;
    EXPECT_EQ(group[1].str() + " of " + group[2].str(), "group of " + std::to_string(peers))
      << log;
  }
  // One model: the final checkpoints hold the same weights and optimizer state, bit for bit.
  const auto reference = shared_state_tensors(checkpoint_path(dir / "peer0", 20));
  ASSERT_FALSE(reference.empty());
  for (int i = 1; i < peers; ++i)
    EXPECT_TRUE(shared_state_tensors(checkpoint_path(dir / ("peer" + std::to_string(i)), 20)) ==
                reference)
      << "peer " << i << " differs";
}

} // namespace
} // namespace ddactor
