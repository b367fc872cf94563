// Multi-process tests of swarm training: real ddactor peers on loopback train one model, are
// killed with SIGKILL at chosen moments (the first peer, a sender or a reducer in the middle of an
// all-reduce), or send poisoned data; the survivors must keep completing rounds and hold
// bit-identical parameters.
#include <gtest/gtest.h>
#include <httplib.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <csignal>
#include <cstring>
#include <memory>
#include <optional>
#include <regex>

#include "runtime/checkpoint_files.hpp"
#include "runtime/matchmaking_rules.hpp"
#include "runtime/safetensors.hpp"
#include "runtime/secure/peer_key.hpp"
#include "tests/e2e/process.hpp"

namespace ddactor::testing {
namespace {

using namespace std::chrono_literals;

bool all_finite(const std::filesystem::path& file) {
  for (const auto& t : read_safetensors_file(file).tensors) {
    if (!t.name.starts_with("model.") || t.dtype != tensor_dtype::f32)
      continue;
    const auto* values = reinterpret_cast<const float*>(t.data.data());
    for (size_t i = 0; i < t.data.size() / sizeof(float); ++i)
      if (!std::isfinite(values[i]))
        return false;
  }
  return true;
}

class swarm : public ::testing::Test {
 protected:
  temp_directory dir{::testing::UnitTest::GetInstance()->current_test_info()->name()};
  uint16_t bootstrap_port = free_port();
  std::vector<std::unique_ptr<child_process>> peers;

  std::filesystem::path run_dir(int i) const { return dir.path() / ("peer" + std::to_string(i)); }
  // The mean of peer i's batch losses over the five epochs up to `last` (one batch's loss is
  // noisy: about +-0.05 here); 1e9 when one is missing.
  double recent_loss(int i, int64_t last) const {
    const auto out = peers[static_cast<size_t>(i)]->output();
    double sum = 0;
    for (int64_t epoch = last - 4; epoch <= last; ++epoch) {
      const auto label = "epoch " + std::to_string(epoch) + "/" + std::to_string(last) + " | loss ";
      const auto at = out.find(label);
      if (at == std::string::npos)
        return 1e9;
      sum += std::stod(out.substr(at + label.size(), 8));
    }
    return sum / 5;
  }

  /// recent_loss averaged over `who`: each peer's epoch loss is the mean over its few batches of
  /// the epoch, too noisy alone for a bound between an honest and a poisoned run.
  double swarm_recent_loss(const std::vector<int>& who, int64_t last) const {
    double sum = 0;
    for (int i : who)
      sum += recent_loss(i, last);
    return sum / static_cast<double>(who.size());
  }

  std::filesystem::path log(int i) const {
    return dir.path() / ("peer" + std::to_string(i) + ".log");
  }

  // A tiny model; target 64 samples per epoch; short timeouts so failures show quickly.
  std::filesystem::path write_config(int64_t epochs, int wait_for) {
    auto path = dir.path() / "swarm.toml";
    write_text_file(path, "[run]\nname = \"e2e-swarm\"\nthreads = 1\n"
                          "[model]\nhidden_size = 32\ndepth = 1\nnum_heads = 2\npatch_size = 7\n"
                          "[data]\nbatch_size = 16\nprefetch = 2\n"
                          "[train]\nsteps = " +
                            std::to_string(epochs) +
                            "\ntarget_batch_size = 64\nwarmup_steps = 2\nlog_every = 1\n"
                            "checkpoint_every = 5\nkeep_checkpoints = 20\nsample_every = 0\n"
                            "[sample]\nsteps = 1\nper_class = 1\n"
                            "[network]\ngossip_interval = 0.3\nsuspect_after = 1.5\n"
                            "remove_after = 3.0\nheartbeat_interval = 0.2\n"
                            "connection_timeout = 1.5\nwait_for_peers = " +
                            std::to_string(wait_for) +
                            "\n[averaging]\nmatchmaking_time = 1.5\nallreduce_timeout = 10.0\n"
                            "chunk_elements = 4096\n");
    return path;
  }

  void start_peer(int i, const std::filesystem::path& config, std::vector<std::string> extra = {}) {
    std::vector<std::string> args{"--config", config.string(), "--set",
                                  "run.dir=\"" + run_dir(i).string() + "\""};
    if (i == 0) {
      args.insert(args.end(),
                  {"--set", "network.listen=\"127.0.0.1:" + std::to_string(bootstrap_port) + "\""});
    } else {
      args.insert(args.end(), {"--set", "network.listen=\"127.0.0.1:0\"", "--set",
                               "network.initial_peers=[\"127.0.0.1:" +
                                 std::to_string(bootstrap_port) + "\"]"});
    }
    args.insert(args.end(), extra.begin(), extra.end());
    if (static_cast<int>(peers.size()) <= i)
      peers.resize(static_cast<size_t>(i) + 1);
    peers[static_cast<size_t>(i)] = std::make_unique<child_process>(DDACTOR_BINARY, args, log(i));
    if (i == 0) {
      ASSERT_TRUE(peers[0]->wait_for_output("listening for peers", 60s)) << peers[0]->output();
    }
  }

  void expect_exit_ok(int i, std::chrono::seconds timeout = 180s) {
    auto code = peers[static_cast<size_t>(i)]->wait_for(timeout);
    ASSERT_TRUE(code.has_value()) << "peer " << i << " did not finish:\n"
                                  << peers[static_cast<size_t>(i)]->output();
    EXPECT_EQ(*code, 0) << peers[static_cast<size_t>(i)]->output();
  }

  // Every given peer wrote a checkpoint at `epoch` and they hold identical model and optimizer,
  // or identical tensors of the names that start with one of `prefixes` where given (averaging
  // parameters or DiLoCo, optimizer moments stay local).
  void expect_identical_at(int64_t epoch, const std::vector<int>& who,
                           const std::vector<std::string>& prefixes = {}) {
    const auto tensors_of = [&](int i) {
      const auto file = checkpoint_path(run_dir(i), epoch);
      if (prefixes.empty())
        return shared_state_tensors(file);
      std::map<std::string, std::vector<std::byte>> out;
      for (auto& t : read_safetensors_file(file).tensors)
        for (const auto& prefix : prefixes)
          if (t.name.starts_with(prefix))
            out[t.name] = std::move(t.data);
      return out;
    };
    auto reference = tensors_of(who.front());
    ASSERT_FALSE(reference.empty());
    for (size_t k = 1; k < who.size(); ++k) {
      auto other = tensors_of(who[k]);
      ASSERT_EQ(other.size(), reference.size());
      for (const auto& [name, bytes] : reference)
        ASSERT_TRUE(other.at(name) == bytes)
          << "peer " << who[k] << " differs from peer " << who.front() << " in " << name
          << " at epoch " << epoch;
    }
  }
};

// Peer 2 declares a slow link (averaging.bandwidth): leaders cut the vector among the three fast
// peers and give it no part to reduce, and the replicas stay identical.
TEST_F(swarm, four_peers_train_one_model_with_identical_parameters_after_each_round) {
  auto config = write_config(15, 4);
  for (int i = 0; i < 4; ++i)
    start_peer(i, config, {"--set", std::string("averaging.bandwidth=") + (i == 2 ? "20" : "100")});
  for (int i = 0; i < 4; ++i)
    expect_exit_ok(i);
  for (int64_t epoch : {5, 10, 15})
    expect_identical_at(epoch, {0, 1, 2, 3});
  int cut_by_rate = 0;
  for (int i = 0; i < 4; ++i) {
    auto out = peers[static_cast<size_t>(i)]->output();
    EXPECT_NE(out.find("epoch 15/15"), std::string::npos) << out;
    EXPECT_NE(out.find("peers 4"), std::string::npos) << out;
    EXPECT_NE(out.find("group of 4"), std::string::npos) << out;
    // Members are listed by peer id: the slow one is wherever its id sorts.
    for (const auto* parts : {"parts by link rate: 0% 33% 33% 33% (Mbit/s: 20 100 100 100)",
                              "parts by link rate: 33% 0% 33% 33% (Mbit/s: 100 20 100 100)",
                              "parts by link rate: 33% 33% 0% 33% (Mbit/s: 100 100 20 100)",
                              "parts by link rate: 33% 33% 33% 0% (Mbit/s: 100 100 100 20)"})
      cut_by_rate += out.find(parts) != std::string::npos ? 1 : 0;
  }
  EXPECT_GE(cut_by_rate, 1) << "no leader cut a group of 4 by the declared link rates";
}

// Peers 2 and 3 cannot accept connections (network.reachable = "no", as behind a home router):
// they dial the reachable peers, hold relay reservations at both, and reach each other through
// a relay. They reduce no part of any round, and the four stay bit-identical. Then the first
// peer (a relay, the bootstrap) is killed: the unreachable peers keep training with peer 1,
// their link to each other moved to the other relay, and the three stay identical.
TEST_F(swarm, peers_behind_nat_train_through_relays_and_survive_losing_one) {
  // Epochs of 512 samples (a few tenths of a second here): a relay's death costs its circuits
  // a fraction of a second, which must stay small next to an epoch, as it is in real runs.
  auto config = write_config(40, 4);
  for (int i = 0; i < 4; ++i)
    start_peer(i, config,
               {"--set", std::string("network.reachable=") + (i >= 2 ? "\"no\"" : "\"yes\""),
                "--set", "train.checkpoint_every=2", "--set", "train.target_batch_size=512"});
  ASSERT_TRUE(peers[0]->wait_for_output("epoch 12/40", 120s)) << peers[0]->output();
  expect_identical_at(10, {0, 1, 2, 3});
  peers[0]->send_signal(SIGKILL);
  ASSERT_EQ(peers[0]->wait_for(10s), 128 + SIGKILL);
  for (int i = 1; i < 4; ++i)
    expect_exit_ok(i);
  expect_identical_at(40, {1, 2, 3});
  int nat_parts = 0;
  for (int i = 0; i < 4; ++i) {
    auto out = peers[static_cast<size_t>(i)]->output();
    nat_parts += static_cast<int>(peers[static_cast<size_t>(i)]->count_in_output("50% 50% 0% 0%") +
                                  peers[static_cast<size_t>(i)]->count_in_output("50% 0% 50% 0%") +
                                  peers[static_cast<size_t>(i)]->count_in_output("50% 0% 0% 50%") +
                                  peers[static_cast<size_t>(i)]->count_in_output("0% 50% 50% 0%") +
                                  peers[static_cast<size_t>(i)]->count_in_output("0% 50% 0% 50%") +
                                  peers[static_cast<size_t>(i)]->count_in_output("0% 0% 50% 50%"));
    if (i >= 2) {
      EXPECT_NE(out.find("reachable through 2 relay(s)"), std::string::npos) << out;
      EXPECT_NE(out.find("not reachable from other peers"), std::string::npos) << out;
    }
  }
  EXPECT_GE(nat_parts, 1) << "no group of 4 gave the two unreachable peers no part";
  // After the relay died the unreachable peers found each other again and averaged as three.
  auto last = peers[2]->output();
  const auto after_kill = last.find("epoch 20/40");
  ASSERT_NE(after_kill, std::string::npos) << last;
  EXPECT_NE(last.find("group of 3", after_kill), std::string::npos) << last;
  // The relays carried the unreachable peers' link to each other.
  EXPECT_NE(peers[1]->output().find("reaches the swarm through this peer's relay"),
            std::string::npos);
}

// One reachable peer and three behind NAT: every link between the NATed ones goes through the
// one relay, and a NATed peer joining late downloads the state (from whichever peer serves it,
// through the relay if it is another NATed one) and then holds the swarm's weights.
TEST_F(swarm, one_reachable_peer_carries_three_behind_nat_and_a_late_one_downloads_the_state) {
  auto config = write_config(60, 3);
  const std::vector<std::string> behind_nat{"--set", "network.reachable=\"no\"", "--set",
                                            "train.target_batch_size=512"};
  start_peer(0, config, {"--set", "train.target_batch_size=512"});
  for (int i = 1; i < 3; ++i)
    start_peer(i, config, behind_nat);
  ASSERT_TRUE(peers[0]->wait_for_output("epoch 8/60", 120s)) << peers[0]->output();
  auto joiner_flags = behind_nat;
  joiner_flags.insert(joiner_flags.end(), {"--set", "network.wait_for_peers=1"});
  start_peer(3, config, joiner_flags);
  for (int i = 0; i < 4; ++i)
    expect_exit_ok(i);
  auto joiner = peers[3]->output();
  EXPECT_NE(joiner.find("downloaded the state of epoch"), std::string::npos) << joiner;
  EXPECT_NE(joiner.find("reachable through 1 relay(s)"), std::string::npos) << joiner;
  expect_identical_at(60, {0, 1, 2, 3});
  EXPECT_NE(peers[0]->output().find("group of 4"), std::string::npos) << peers[0]->output();
}

// Peers on IPv4 and IPv6. Peer 0 listens on 127.0.0.1 and ::1 (one port) and announces both;
// peer 1 joins through peer 0's IPv6 address, listens on ::1 only and announces 127.0.0.1 first
// (as a peer whose IPv4 port forwarding is missing would); peer 2 accepts no connections, so it
// must dial peer 1 itself: its dial to 127.0.0.1 is refused and it reaches peer 1 at ::1. All
// three average in every round and stay bit-identical.
TEST_F(swarm, peers_are_reached_at_whichever_announced_address_works_ipv4_or_ipv6) {
  auto config = write_config(8, 3);
  const auto port = std::to_string(bootstrap_port);
  start_peer(0, config,
             {"--set", "network.listen=[\"127.0.0.1:" + port + "\", \"[::1]:" + port + "\"]"});
  start_peer(1, config,
             {"--set", "network.listen=\"[::1]:0\"", "--set",
              "network.announce=[\"127.0.0.1:0\", \"[::1]:0\"]", "--set",
              "network.initial_peers=[\"[::1]:" + port + "\"]"});
  ASSERT_TRUE(peers[1]->wait_for_output("joined", 60s)) << peers[1]->output();
  start_peer(2, config, {"--set", "network.reachable=\"no\""});
  for (int i = 0; i < 3; ++i)
    expect_exit_ok(i);
  expect_identical_at(5, {0, 1, 2});
  const auto first = peers[0]->output();
  EXPECT_NE(first.find("(announced as 127.0.0.1:" + port + " and [::1]:" + port + ")"),
            std::string::npos)
    << first;
  const auto second = peers[1]->output();
  EXPECT_NE(second.find("(announced as 127.0.0.1:"), std::string::npos) << second;
  EXPECT_NE(second.find(" and [::1]:"), std::string::npos) << second;
  const auto third = peers[2]->output();
  EXPECT_NE(third.find("its address 127.0.0.1:"), std::string::npos) << third;
  EXPECT_NE(third.find("did not answer"), std::string::npos) << third;
  for (int i = 0; i < 3; ++i) {
    const auto out = peers[static_cast<size_t>(i)]->output();
    EXPECT_NE(out.find("epoch 8/8"), std::string::npos) << out;
    EXPECT_NE(out.find("group of 3"), std::string::npos) << out;
  }
}

// train.precision = "bf16": autocast computes the forward and backward passes in bfloat16 while
// weights, gradients and optimizer state stay fp32, so peers averaging the same gradients still
// hold bit-identical weights.
TEST_F(swarm, peers_training_in_bf16_stay_bit_identical) {
  auto config = write_config(6, 2);
  for (int i = 0; i < 2; ++i)
    start_peer(i, config, {"--set", "train.precision=\"bf16\""});
  for (int i = 0; i < 2; ++i)
    expect_exit_ok(i);
  expect_identical_at(5, {0, 1});
  expect_identical_at(6, {0, 1});
  EXPECT_NE(peers[0]->output().find("in bf16"), std::string::npos) << peers[0]->output();
}

// Gradients mode trains the next epoch while a round runs (averaging.overlap) or
// pauses for it; either way every peer applies the same updates in the same order. How much is
// trained during rounds depends on timing; the log line shows the share when overlap is on. With
// overlap each peer trains on the weights one step ahead with its own gradient (step_ahead),
// which it takes back before applying the average: the weights must still be identical. "auto"
// (the default) overlaps where the peer steps ahead, and pauses where it does not.
struct overlap_case {
  std::string name;
  std::vector<std::string> settings;
  bool overlaps;
};

class swarm_overlap : public swarm, public ::testing::WithParamInterface<overlap_case> {};

TEST_P(swarm_overlap, peers_hold_identical_weights_and_optimizer_state) {
  const bool overlap = GetParam().overlaps;
  auto config = write_config(12, 3);
  std::vector<std::string> extra{"--set", "train.checkpoint_every=4"};
  for (const auto& setting : GetParam().settings)
    extra.insert(extra.end(), {"--set", setting});
  for (int i = 0; i < 3; ++i)
    start_peer(i, config, extra);
  for (int i = 0; i < 3; ++i)
    expect_exit_ok(i);
  for (int64_t epoch : {4, 8, 12})
    expect_identical_at(epoch, {0, 1, 2});
  size_t lines_with_share = 0;
  for (int i = 0; i < 3; ++i)
    lines_with_share += peers[static_cast<size_t>(i)]->count_in_output("% | lr ");
  size_t stepping_ahead = 0;  // averaging.step_ahead (on by default): taken back every round
  for (int i = 0; i < 3; ++i)
    stepping_ahead += peers[static_cast<size_t>(i)]->count_in_output("rounds one own step ahead");
  if (overlap) {
    EXPECT_GT(lines_with_share, 0u) << peers[0]->output();
    EXPECT_GT(stepping_ahead, 0u) << peers[0]->output();
    // Each peer scores its guesses against the swarm's steps: a share of the swarm's batch
    // points the way the whole batch does.
    static const std::regex scored(
      R"(steps ahead: on average each went (-?[0-9.]+) of the swarm's step along it and ended )"
      R"(([0-9.]+) of a step off it \(([0-9]+) rounds scored\))");
    size_t peers_scored = 0;
    for (int i = 0; i < 3; ++i) {
      const auto output = peers[static_cast<size_t>(i)]->output();
      std::smatch match;
      if (!std::regex_search(output, match, scored))
        continue;
      ++peers_scored;
      EXPECT_GT(std::stod(match[1].str()), 0.0) << output;
      EXPECT_GT(std::stoi(match[3].str()), 0) << output;
    }
    EXPECT_GT(peers_scored, 0u) << peers[0]->output();
  } else {
    EXPECT_EQ(lines_with_share, 0u) << peers[0]->output();
    EXPECT_EQ(stepping_ahead, 0u) << peers[0]->output();
  }
}

INSTANTIATE_TEST_SUITE_P(
  overlap, swarm_overlap,
  ::testing::Values(overlap_case{"on", {"averaging.overlap=true"}, true},
                    overlap_case{"off", {"averaging.overlap=false"}, false},
                    overlap_case{"auto", {}, true},
                    overlap_case{"auto_without_step_ahead", {"averaging.step_ahead=false"}, false}),
  [](const ::testing::TestParamInfo<overlap_case>& info) { return info.param.name; });

// With lossy codecs every peer still ends each round with the same values: the reducer of a
// part encodes its result once and everyone, itself included, decodes that encoding.
class swarm_codec : public swarm, public ::testing::WithParamInterface<std::string> {};

TEST_P(swarm_codec, peers_stay_bit_identical_with_a_lossy_codec) {
  auto config = write_config(10, 3);
  std::vector<std::string> codec{"--set", "averaging.compression=" + GetParam(), "--set",
                                 "averaging.zstd_level=" + std::string(GetParam() == "int8" ? "3" : "0"),
                                 "--set", "averaging.adaptive_exact_below=2000", "--set",
                                 "averaging.topk_fraction=0.05"};
  for (int i = 0; i < 3; ++i)
    start_peer(i, config, codec);
  for (int i = 0; i < 3; ++i)
    expect_exit_ok(i);
  expect_identical_at(5, {0, 1, 2});
  expect_identical_at(10, {0, 1, 2});
  for (int i = 0; i < 3; ++i)
    EXPECT_TRUE(all_finite(checkpoint_path(run_dir(i), 10)));
}

INSTANTIATE_TEST_SUITE_P(codecs, swarm_codec,
                         ::testing::Values("fp16", "bf16", "int8", "topk", "adaptive"));

// Parameter averaging and DiLoCo also leave every peer of a round with the same weights (after
// the average, or after the same outer Nesterov step); their optimizer moments stay local. (With
// overlap, DiLoCo's default, the weights hold each peer's inner steps since: see below.)
class swarm_mode : public swarm, public ::testing::WithParamInterface<std::string> {};

TEST_P(swarm_mode, peers_hold_the_same_weights_after_each_round) {
  auto config = write_config(10, 3);
  for (int i = 0; i < 3; ++i)
    start_peer(i, config,
               {"--set", "train.averaging=" + GetParam(), "--set", "averaging.overlap=false"});
  for (int i = 0; i < 3; ++i)
    expect_exit_ok(i);
  for (int64_t epoch : {5, 10}) {
    std::map<std::string, std::vector<std::byte>> reference;
    for (int i = 0; i < 3; ++i) {
      std::map<std::string, std::vector<std::byte>> weights;
      for (auto& t : read_safetensors_file(checkpoint_path(run_dir(i), epoch)).tensors)
        if (t.name.starts_with("model."))
          weights[t.name] = std::move(t.data);
      if (i == 0)
        reference = std::move(weights);
      else
        EXPECT_TRUE(weights == reference) << "peer " << i << " differs at epoch " << epoch;
    }
  }
  // Local steps happened: an epoch takes 4 batches of 16 (target 64) among 3 peers, so some
  // peer took more optimizer steps than there were epochs.
  int64_t most_steps = 0;
  for (int i = 0; i < 3; ++i) {
    auto content = read_safetensors_file(checkpoint_path(run_dir(i), 10));
    most_steps = std::max<int64_t>(most_steps, std::stoll(content.metadata.at("step")));
  }
  EXPECT_GT(most_steps, 10);
}

INSTANTIATE_TEST_SUITE_P(modes, swarm_mode, ::testing::Values("parameters", "diloco"));

// DiLoCo overlaps by default (averaging.overlap = "auto"): inner steps go on while the outer
// round runs. The anchor and its momentum, which the outer steps move, stay bit-identical on
// every peer; the weights hold each peer's own inner steps on top, until the end, where every
// peer writes the anchor.
TEST_F(swarm, diloco_overlaps_its_outer_rounds_and_keeps_the_anchor_identical) {
  auto config = write_config(12, 3);
  for (int i = 0; i < 3; ++i)
    start_peer(i, config,
               {"--set", "train.averaging=\"diloco\"", "--set", "train.checkpoint_every=4"});
  for (int i = 0; i < 3; ++i)
    expect_exit_ok(i);
  for (int64_t epoch : {4, 8})
    expect_identical_at(epoch, {0, 1, 2}, {"outer."});
  expect_identical_at(12, {0, 1, 2}, {"model.", "outer."});
  const auto anchor_is_model = [&](int i) {
    auto content = read_safetensors_file(checkpoint_path(run_dir(i), 12));
    std::vector<std::byte> weights;
    for (const auto& t : content.tensors)
      if (t.name.starts_with("model."))
        weights.insert(weights.end(), t.data.begin(), t.data.end());
    const auto* anchor = content.find("outer.anchor");
    return anchor != nullptr && anchor->data == weights;
  };
  EXPECT_TRUE(anchor_is_model(0));
  size_t lines_with_share = 0;
  for (int i = 0; i < 3; ++i)
    lines_with_share += peers[static_cast<size_t>(i)]->count_in_output("% | lr ");
  EXPECT_GT(lines_with_share, 0u) << peers[0]->output();
}

// A survivor may end the interrupted round alone (its leader died); it then downloads the
// others' state, so the run leaves room for that after the kill (epochs here take ~10 ms).
TEST_F(swarm, the_first_peer_killed_mid_run_does_not_stop_the_others) {
  auto config = write_config(40, 4);
  for (int i = 0; i < 4; ++i)
    start_peer(i, config);
  ASSERT_TRUE(peers[0]->wait_for_output("epoch 6/40", 120s)) << peers[0]->output();
  peers[0]->send_signal(SIGKILL);
  ASSERT_EQ(peers[0]->wait_for(10s), 128 + SIGKILL);
  for (int i = 1; i < 4; ++i)
    expect_exit_ok(i);
  expect_identical_at(40, {1, 2, 3});
  for (int i = 1; i < 4; ++i) {
    auto out = peers[static_cast<size_t>(i)]->output();
    EXPECT_NE(out.find("group of 3"), std::string::npos) << out;
    EXPECT_NE(out.find("peers 3"), std::string::npos) << out;
  }
}

TEST_F(swarm, a_late_joiner_downloads_the_state_and_then_holds_identical_parameters) {
  auto config = write_config(100, 3);
  // The three ran their last 92 epochs in 4.5 s, once before the joiner had loaded its data:
  // slowed by 30 ms a batch (an epoch's 4 batches take two in a row among three peers), they
  // leave it 5.5 s at least.
  for (int i = 0; i < 3; ++i)
    start_peer(i, config, {"--set", "debug.batch_delay_ms=30"});
  ASSERT_TRUE(peers[0]->wait_for_output("epoch 8/100", 120s)) << peers[0]->output();
  start_peer(3, config, {"--set", "network.wait_for_peers=1"});
  for (int i = 0; i < 4; ++i)
    expect_exit_ok(i);
  auto joiner = peers[3]->output();
  EXPECT_NE(joiner.find("downloading the swarm's state"), std::string::npos) << joiner;
  EXPECT_NE(joiner.find("downloaded the state of epoch"), std::string::npos) << joiner;
  expect_identical_at(100, {0, 1, 2, 3});
  EXPECT_NE(peers[0]->output().find("group of 4"), std::string::npos);
}

// A late joiner with two trainers downloads the swarm's state on rank 0, which hands it whole to
// its other trainer before they train on together.
TEST_F(swarm, a_late_joiner_with_two_trainers_takes_the_state_on_every_trainer) {
  auto config = write_config(100, 1);
  // Alone, the first peer ran its 100 epochs of 4 batches in under a second: slowed to 60 ms an
  // epoch, it leaves the joiner 5.5 s at least.
  start_peer(0, config, {"--set", "debug.batch_delay_ms=15"});
  ASSERT_TRUE(peers[0]->wait_for_output("epoch 8/100", 120s)) << peers[0]->output();
  start_peer(1, config, {"--set", "run.trainers=2"});
  for (int i = 0; i < 2; ++i)
    expect_exit_ok(i);
  const auto joiner = peers[1]->output();
  EXPECT_NE(joiner.find("downloaded the state of epoch"), std::string::npos) << joiner;
  EXPECT_NE(joiner.find("group of 2"), std::string::npos) << joiner;
  EXPECT_EQ(joiner.find("differ from trainer 0's"), std::string::npos) << joiner;
  EXPECT_EQ(joiner.find("restarting in"), std::string::npos) << joiner;
  expect_identical_at(100, {0, 1});
}

// With averaging.overlap the two trainers train into the next epoch while rank 0's round runs;
// Ctrl-C then ends both trainers, and rank 0 writes the checkpoint.
TEST_F(swarm, two_trainers_overlap_rounds_and_stop_together_on_ctrl_c) {
  auto config = write_config(100000, 2);
  for (int i = 0; i < 2; ++i)
    start_peer(i, config,
               {"--set", "averaging.overlap=true", "--set",
                std::string("run.trainers=") + (i == 1 ? "2" : "1")});
  ASSERT_TRUE(peers[1]->wait_for_output("epoch 12/", 120s)) << peers[1]->output();
  for (int i : {1, 0}) {
    peers[static_cast<size_t>(i)]->send_signal(SIGINT);
    expect_exit_ok(i, 60s);
  }
  expect_identical_at(5, {0, 1});
  expect_identical_at(10, {0, 1});
  const auto out = peers[1]->output();
  EXPECT_NE(out.find("stopping at epoch"), std::string::npos) << out;
  EXPECT_GT(peers[1]->count_in_output("% | lr "), 0u) << out;
  EXPECT_EQ(out.find("differ from trainer 0's"), std::string::npos) << out;
  EXPECT_EQ(out.find("restarting in"), std::string::npos) << out;
}

// A peer with two trainers (run.trainers = 2) is one peer to the swarm in every averaging mode.
// Averaging gradients, its trainers sum their epoch's gradients inside the node, rank 0 averages
// the sum with the other peer and every trainer steps with the round's outcome: the peers hold
// bit-identical weights and optimizer state. Averaging parameters or DiLoCo pseudo-gradients,
// each local step is the node's step (both trainers' slices summed, the same step on both), rank
// 0 averages its parameters or pseudo-gradient and both trainers apply the outcome: the peers hold
// the same weights (their optimizer moments stay local), in DiLoCo the same outer anchor and
// momentum.
class swarm_node_mode : public swarm, public ::testing::WithParamInterface<std::string> {
 protected:
  // What the peers share after a round: everything, or the weights and DiLoCo's outer state.
  std::vector<std::string> shared_prefixes() const {
    if (GetParam() == "gradients")
      return {};
    return {"model.", "outer."};
  }
};

TEST_P(swarm_node_mode, a_peer_with_two_trainers_steps_as_one_and_takes_the_round_s_outcome) {
  auto config = write_config(8, 2);
  // Overlap off: in DiLoCo the weights would hold each peer's inner steps since the round.
  const std::vector<std::string> mode{"--set", "train.averaging=\"" + GetParam() + "\"", "--set",
                                      "averaging.overlap=false"};
  start_peer(0, config, mode);
  auto two = mode;
  two.insert(two.end(), {"--set", "run.trainers=2"});
  start_peer(1, config, two);
  for (int i = 0; i < 2; ++i)
    expect_exit_ok(i);
  for (int64_t epoch : {5, 8})
    expect_identical_at(epoch, {0, 1}, shared_prefixes());
  const auto out = peers[1]->output();
  EXPECT_NE(out.find("2 trainers in this peer"), std::string::npos) << out;
  EXPECT_NE(out.find("group of 2"), std::string::npos) << out;
  EXPECT_NE(out.find("epoch 8/8"), std::string::npos) << out;
  // Rank 1 compares its weights with rank 0's at every round.
  EXPECT_EQ(out.find("differ from trainer 0's"), std::string::npos) << out;
  EXPECT_EQ(out.find("restarting in"), std::string::npos) << out;
}

// Rank 1 crashes mid-run: the set restarts from rank 0's checkpoint, rank 0 takes the swarm's
// state (in DiLoCo with its outer anchor and momentum) and hands it to rank 1.
TEST_P(swarm_node_mode, a_crashed_rank_restarts_its_set_which_takes_the_swarm_s_state_again) {
  auto config = write_config(14, 2);
  // Overlap off: in DiLoCo the weights would hold each peer's inner steps since the round.
  const std::vector<std::string> mode{"--set", "train.averaging=\"" + GetParam() + "\"", "--set",
                                      "averaging.overlap=false"};
  start_peer(0, config, mode);
  auto two = mode;
  two.insert(two.end(), {"--set", "run.trainers=2", "--set", "debug.crash_trainer_at_step=7"});
  start_peer(1, config, two);
  for (int i = 0; i < 2; ++i)
    expect_exit_ok(i);
  const auto out = peers[1]->output();
  EXPECT_NE(out.find("injected trainer crash"), std::string::npos) << out;
  EXPECT_NE(out.find("trainer restarted"), std::string::npos) << out;
  EXPECT_EQ(out.find("differ from trainer 0's"), std::string::npos) << out;
  expect_identical_at(14, {0, 1}, shared_prefixes());
}

INSTANTIATE_TEST_SUITE_P(modes, swarm_node_mode,
                         ::testing::Values("gradients", "parameters", "diloco"));

// With top-k, AdamW's catch-up counts are shared state too: a joiner that did not get them would
// step differently from its first round on (and be repaired as a split, which must not happen).
TEST_F(swarm, a_late_joiner_with_topk_steps_like_everyone_from_its_first_round) {
  // 200 epochs: with 60, a loaded machine once started the joiner (loading its data takes
  // seconds there) after the swarm had finished, and it trained alone. Idle, an epoch takes about
  // 45 ms and the joiner (4 s from its start to its trainer) joins near epoch 100; it failed
  // once at the start of a full suite. Slowed by 30 ms a batch (an epoch's 4 batches take two in
  // a row among three peers), the first peers leave it 11.5 s at least, however busy the cores.
  auto config = write_config(200, 3);
  const std::vector<std::string> topk{"--set", "averaging.compression=\"topk\""};
  auto first = topk;
  first.insert(first.end(), {"--set", "debug.batch_delay_ms=30"});
  for (int i = 0; i < 3; ++i)
    start_peer(i, config, first);
  ASSERT_TRUE(peers[0]->wait_for_output("epoch 8/200", 120s)) << peers[0]->output();
  auto joiner_args = topk;
  joiner_args.insert(joiner_args.end(), {"--set", "network.wait_for_peers=1"});
  start_peer(3, config, joiner_args);
  for (int i = 0; i < 4; ++i)
    expect_exit_ok(i);
  EXPECT_NE(peers[3]->output().find("downloaded the state of epoch"), std::string::npos)
    << peers[3]->output();
  expect_identical_at(200, {0, 1, 2, 3});
  // A round that ended alone (the joiner came as the group of its epoch had closed, or a loaded
  // machine timed out matchmaking) is repaired by design; a repair with no such round is the bug.
  for (int i = 0; i < 4; ++i) {
    const auto& peer = *peers[static_cast<size_t>(i)];
    EXPECT_LE(peer.count_in_output("the weights differ from the swarm's"),
              peer.count_in_output("; stepping alone"))
      << "peer " << i << ":\n" << peer.output();
  }
}

// A peer that joins a running swarm holds the swarm's exact state from then on, in every
// averaging mode, also on a machine whose cores are busy with other work (where matchmaking
// times out now and then, and rounds end alone). Once, every peer of an epoch stepped alone,
// each then waited for another to serve the swarm's state, and the peers drifted apart for good.
struct late_join_case {
  std::string mode;
  bool loaded;
};

class swarm_late_join : public swarm, public ::testing::WithParamInterface<late_join_case> {};

TEST_P(swarm_late_join, the_joiner_and_the_swarm_stay_bit_identical_at_every_checkpoint) {
  const auto& param = GetParam();
  std::unique_ptr<cpu_burners> burners;
  if (param.loaded)
    burners = std::make_unique<cpu_burners>(2, dir.path());
  // Alone, the first peer ran an epoch in 5 to 15 ms: 150 epochs were over before a joiner on a
  // busy machine had loaded its data (it then found no one to join). Slowed to 40 ms an epoch
  // (4 batches), it leaves the joiner 6 s.
  const int64_t epochs = 160;
  auto config = write_config(epochs, 1);
  const std::vector<std::string> mode{"--set", "train.averaging=\"" + param.mode + "\"", "--set",
                                      "train.checkpoint_every=10", "--set",
                                      "averaging.overlap=false"};
  auto first = mode;
  first.insert(first.end(), {"--set", "debug.batch_delay_ms=10"});
  start_peer(0, config, first);
  ASSERT_TRUE(peers[0]->wait_for_output("epoch 10/", 120s)) << peers[0]->output();
  start_peer(1, config, mode);
  expect_exit_ok(0, 300s);
  expect_exit_ok(1, 300s);
  const auto joiner = peers[1]->output();
  const auto at = joiner.find("downloaded the state of epoch ");
  ASSERT_NE(at, std::string::npos) << joiner;
  const int64_t joined = std::stoll(joiner.substr(at + std::strlen("downloaded the state of epoch ")));
  // Every checkpoint the joiner wrote after it joined (epochs 10 apart) equals the first peer's.
  // Optimizer moments are shared state only in gradients mode; elsewhere they stay local.
  int compared = 0;
  for (int64_t epoch = (joined / 10 + 1) * 10; epoch <= epochs; epoch += 10) {
    const auto mine = checkpoint_path(run_dir(1), epoch);
    if (!std::filesystem::exists(mine))
      continue;  // a download may have skipped past it
    ++compared;
    for (auto& [name, bytes] : shared_state_tensors(checkpoint_path(run_dir(0), epoch))) {
      if (param.mode != "gradients" && !name.starts_with("model."))
        continue;
      ASSERT_TRUE(shared_state_tensors(mine).at(name) == bytes)
        << name << " differs at epoch " << epoch << " (joined at " << joined << ")\npeer 0:\n"
        << peers[0]->output() << "\njoiner:\n" << joiner;
    }
  }
  EXPECT_GE(compared, 3) << "joined at epoch " << joined << ":\n" << joiner;
}

INSTANTIATE_TEST_SUITE_P(
  modes, swarm_late_join,
  ::testing::Values(late_join_case{"gradients", false}, late_join_case{"parameters", false},
                    late_join_case{"diloco", false}, late_join_case{"gradients", true},
                    late_join_case{"parameters", true}, late_join_case{"diloco", true}),
  [](const ::testing::TestParamInfo<late_join_case>& info) {
    return info.param.mode + (info.param.loaded ? "_loaded" : "_idle");
  });

// A split swarm heals: a peer whose weights differ from the others' (here another run.seed; in
// the wild two groups that averaged apart) takes the weights most peers of its epoch hold.
TEST_F(swarm, a_peer_holding_other_weights_takes_those_most_peers_hold) {
  auto config = write_config(40, 3);
  for (int i = 0; i < 3; ++i)
    start_peer(i, config, i == 2 ? std::vector<std::string>{"--set", "run.seed=7"}
                                 : std::vector<std::string>{});
  for (int i = 0; i < 3; ++i)
    expect_exit_ok(i);
  expect_identical_at(40, {0, 1, 2});
  size_t repairs = 0;
  for (int i = 0; i < 3; ++i)
    repairs += peers[static_cast<size_t>(i)]->count_in_output("the weights differ from the swarm's");
  EXPECT_GT(repairs, 0u) << peers[2]->output();
}

class swarm_fault : public swarm, public ::testing::WithParamInterface<std::string> {};

TEST_P(swarm_fault, a_peer_killed_in_the_middle_of_an_all_reduce_costs_one_round_at_most) {
  auto config = write_config(12, 4);
  for (int i = 0; i < 3; ++i)
    start_peer(i, config);
  start_peer(3, config, {"--set", "debug.die_in_round=5", "--set", "debug.die_as=" + GetParam()});
  ASSERT_EQ(peers[3]->wait_for(120s), 128 + SIGKILL) << peers[3]->output();
  EXPECT_NE(peers[3]->output().find("as " + GetParam()), std::string::npos);
  for (int i = 0; i < 3; ++i)
    expect_exit_ok(i);
  // Every survivor finished the round of epoch 5 (restarted without the dead peer) and all later
  // ones, with the same result.
  expect_identical_at(10, {0, 1, 2});
  expect_identical_at(12, {0, 1, 2});
  bool someone_restarted = false;
  for (int i = 0; i < 3; ++i) {
    auto out = peers[static_cast<size_t>(i)]->output();
    someone_restarted |= out.find("restarting with 3 of 4 members") != std::string::npos;
    EXPECT_EQ(out.find("stepping with local values"), std::string::npos) << out;
  }
  EXPECT_TRUE(someone_restarted);
}

INSTANTIATE_TEST_SUITE_P(roles, swarm_fault, ::testing::Values("sender", "reducer"));

// A peer sending NaN chunks from epoch 3: its chunks are rejected, the round restarts without
// it, and each honest peer then bans it: it is left out of their rounds for network.ban_time (as
// leader and as member), so it costs one restart, not one per epoch; the honest peers end
// identical.
TEST_F(swarm, a_peer_sending_poisoned_chunks_is_dropped_and_the_model_stays_finite) {
  auto config = write_config(10, 4);
  for (int i = 0; i < 3; ++i)
    start_peer(i, config);
  start_peer(3, config,
             {"--set", "debug.corrupt_chunks_from=3", "--set", "debug.allow_byzantine=true"});
  for (int i = 0; i < 4; ++i)
    expect_exit_ok(i, 240s);
  for (int i = 0; i < 4; ++i)
    EXPECT_TRUE(all_finite(checkpoint_path(run_dir(i), 10))) << "peer " << i;
  expect_identical_at(10, {0, 1, 2});
  size_t rejections = 0, restarts = 0, bans = 0;
  for (int i = 0; i < 3; ++i) {
    const auto& peer = peers[static_cast<size_t>(i)];
    rejections += peer->count_in_output("rejected a chunk");
    restarts += peer->count_in_output("members (invalid data from");
    bans += peer->count_in_output("(it sent invalid data in a round): left out of");
  }
  EXPECT_GT(rejections, 0u);
  // Left out of the next rounds once caught: a restart or two, not one per epoch (7 epochs from
  // corrupt_chunks_from to the end, each of 3 honest reducers restarting: about 20 before).
  EXPECT_GE(bans, 1u);
  EXPECT_LE(restarts, 6u) << peers[0]->output();
}

// Admission: two peers with the swarm key train over sealed links; a peer holding another key
// keeps dialing the first one and is refused at the handshake, never joins a view and never
// averages; a peer with no key at all is refused at start with what to do.
TEST_F(swarm, only_peers_holding_the_swarm_key_join_and_links_are_sealed) {
  auto config = write_config(8, 2);
  // Another swarm's key, as a user makes one; the command never replaces an existing key.
  auto wrong_key = dir.path() / "other.key";
  ASSERT_EQ(run_ddactor({"keys", "--new-swarm-key", wrong_key.string()}, dir.path() / "keys.log"),
            0);
  EXPECT_EQ(std::filesystem::status(wrong_key).permissions() & std::filesystem::perms::all,
            std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  EXPECT_NE(run_ddactor({"keys", "--new-swarm-key", wrong_key.string()}, dir.path() / "again.log"),
            0);
  start_peer(0, config);
  start_peer(2, config, {"--set", "network.swarm_key_file=\"" + wrong_key.string() + "\""});
  start_peer(1, config);
  expect_exit_ok(0);
  expect_exit_ok(1);
  expect_identical_at(5, {0, 1});
  auto first = peers[0]->output();
  EXPECT_NE(first.find("links sealed"), std::string::npos) << first;
  EXPECT_NE(first.find("refused (wrong_swarm_key)"), std::string::npos) << first;
  EXPECT_EQ(first.find("peers 3"), std::string::npos) << first;
  auto stranger = peers[2]->output();
  EXPECT_EQ(stranger.find("epoch 1/"), std::string::npos) << stranger;
  EXPECT_TRUE(peers[2]->running()) << stranger;
  peers[2]->send_signal(SIGKILL);

  // No key, no allowlist, not open: a clear error before anything starts.
  ::setenv("DDACTOR_SWARM_KEY", "", 1);
  start_peer(3, config);
  ::unsetenv("DDACTOR_SWARM_KEY");
  auto code = peers[3]->wait_for(60s);
  ASSERT_TRUE(code.has_value());
  EXPECT_NE(*code, 0);
  EXPECT_TRUE(peers[3]->wait_for_output("nothing says who may join", 1s)) << peers[3]->output();
}

// A hostile insider (it holds the swarm key) claims an epoch 100000 ahead and serves its weights
// negated as that epoch's state, and sends the same report under every honest peer's id, as if
// they vouched for it; those reports are refused (signed with its key, they prove only its id).
// The three honest peers do not fall "behind" it (one voice is short of
// averaging.state_quorum), a late joiner takes the state the honest peers vouch for,
// and no honest peer ever holds the forged epoch. (Three honest peers: with one hostile of three,
// a quorum of two can only be the hostile one and one honest, so an honest peer that needs a
// state could not get one: n >= 3f + 1, as for any Byzantine agreement.)
TEST_F(swarm, a_peer_claiming_a_far_future_epoch_with_a_forged_state_is_not_followed) {
  auto config = write_config(300, 4);
  for (int i = 0; i < 3; ++i)
    start_peer(i, config);
  start_peer(3, config, {"--set", "debug.byzantine=\"forged_state\"", "--set",
                         "debug.allow_byzantine=true"});
  ASSERT_TRUE(peers[0]->wait_for_output("epoch 8/300", 120s)) << peers[0]->output();
  start_peer(4, config, {"--set", "network.wait_for_peers=1"});
  for (int i : {0, 1, 2, 4})
    expect_exit_ok(i);
  peers[3]->send_signal(SIGKILL);
  expect_identical_at(300, {0, 1, 2, 4});
  for (int i : {0, 1, 2, 4}) {
    auto out = peers[static_cast<size_t>(i)]->output();
    EXPECT_EQ(out.find("downloaded the state of epoch 1000"), std::string::npos) << out;
    EXPECT_FALSE(std::regex_search(out, std::regex("epoch 1000[0-9][0-9]/"))) << out;
  }
  EXPECT_NE(peers[0]->output().find("a peer claims epoch 1000"), std::string::npos)
    << peers[0]->output();
  EXPECT_NE(peers[0]->output().find("rejected a report for peer"), std::string::npos)
    << peers[0]->output();
  auto joiner = peers[4]->output();
  EXPECT_NE(joiner.find("downloaded the state of epoch"), std::string::npos) << joiner;
}

// One of five peers sends reducers its values times -100: finite, so validation lets them in.
// With averaging.aggregation = "centered_clip" every reducer bounds what it moves the average by:
// the honest peers train as alone together would (loss falling as usual) and stay identical.
// (With the weighted mean the same attack sends the loss up: see the closing note's figures.)
TEST_F(swarm, centered_clip_keeps_a_peer_sending_scaled_values_from_steering_the_model) {
  auto config = write_config(30, 5);
  const std::vector<std::string> clip{"--set", "averaging.aggregation=\"centered_clip\""};
  for (int i = 0; i < 4; ++i)
    start_peer(i, config, clip);
  auto hostile = clip;
  hostile.insert(hostile.end(), {"--set", "debug.byzantine=\"scaled_values\"", "--set",
                                 "debug.allow_byzantine=true"});
  start_peer(4, config, hostile);
  for (int i = 0; i < 4; ++i)
    expect_exit_ok(i);
  peers[4]->send_signal(SIGKILL);
  expect_identical_at(30, {0, 1, 2, 3});
  for (int i = 0; i < 4; ++i)
    EXPECT_TRUE(all_finite(checkpoint_path(run_dir(i), 30))) << "peer " << i;
  EXPECT_LT(swarm_recent_loss({0, 1, 2, 3}, 30), 1.65) << peers[0]->output();
}

// One of four peers, as reducer, sends every member the same negated result for its part: the
// digests agree, so only an audit can tell. Every honest peer audits one other reducer after each
// round (averaging.audit_probability = 1): the first to pick the liar catches it and tells the
// others with its proof (the inputs it checked, signed by their senders), which they check
// against what they applied, without asking the liar. Each bans it (its links closed and
// refused) and goes back to its state from before that round. The honest peers train on
// together, end identical with a falling loss, and ban nobody else.
TEST_F(swarm, a_reducer_that_lies_about_its_result_is_caught_by_an_audit_and_banned) {
  auto config = write_config(30, 4);
  const auto metrics_port = free_port();
  const std::vector<std::string> audit{"--set", "averaging.audit_probability=1"};
  for (int i = 0; i < 3; ++i) {
    auto extra = audit;
    if (i == 0)
      extra.insert(extra.end(), {"--set", "monitoring.listen=\"127.0.0.1:" +
                                            std::to_string(metrics_port) + "\""});
    start_peer(i, config, extra);
  }
  auto hostile = audit;
  hostile.insert(hostile.end(), {"--set", "debug.byzantine=\"lying_reducer\"", "--set",
                                 "debug.allow_byzantine=true", "--set", "train.steps=1000000"});
  start_peer(3, config, hostile);
  ASSERT_TRUE(peers[0]->wait_for_output("banned for 600 s", 120s)) << peers[0]->output();
  httplib::Client client("127.0.0.1", metrics_port);
  const auto metrics = client.Get("/metrics");
  ASSERT_TRUE(metrics) << "no /metrics";
  EXPECT_EQ(metrics->body.find("ddactor_averaging_audits_total{verdict=\"lied\"} 0"),
            std::string::npos)
    << metrics->body;
  EXPECT_NE(metrics->body.find("ddactor_averaging_banned_peers_total 1"), std::string::npos)
    << metrics->body;
  EXPECT_NE(metrics->body.find("ddactor_averaging_banned_peers 1"), std::string::npos)
    << metrics->body;
  EXPECT_NE(metrics->body.find("ddactor_averaging_discarded_rounds_total{result=\"discarded\"}"),
            std::string::npos)
    << metrics->body;
  for (int i = 0; i < 3; ++i)
    expect_exit_ok(i);
  peers[3]->send_signal(SIGKILL);
  expect_identical_at(30, {0, 1, 2});
  size_t discards = 0, convinced_by_proof = 0;
  for (int i = 0; i < 3; ++i) {
    const auto& peer = *peers[static_cast<size_t>(i)];
    const auto& out = peer.output();
    EXPECT_EQ(peer.count_in_output("banned for 600 s"), 1u) << out;
    EXPECT_NE(out.find("its links closed and refused"), std::string::npos) << out;
    EXPECT_EQ(out.find("did not show an auditor its evidence"), std::string::npos) << out;
    // Each goes back once; one that applied the next round before it heard (a slow machine) keeps
    // it, and takes the others' state when the digests differ.
    EXPECT_EQ(peer.count_in_output("discarded: reducer") +
                peer.count_in_output("a later round was applied since"),
              1u)
      << out;
    discards += peer.count_in_output("discarded: reducer");
    EXPECT_EQ(out.find("forged proof"), std::string::npos) << out;
    convinced_by_proof += peer.count_in_output("'s proof shows that reducer");
  }
  EXPECT_GE(discards, 2u);
  EXPECT_GE(convinced_by_proof, 1u);
  // About 1.58 (one peer alone up to 1.67 on Debian 13); with audits off the liar, negating a
  // third of every update, keeps it at 1.8.
  EXPECT_LT(swarm_recent_loss({0, 1, 2}, 30), 1.69) << peers[0]->output();
}

// One of four peers audits a reducer after every round and accuses it whatever it finds, with the
// inputs it was shown as proof, one of them altered, to have honest rounds discarded. The
// members, the accused among them, check the proof against what they applied: an input its
// sender did not sign is the accuser's doing, so they ban the accuser and discard nothing. The
// honest peers train on together and end identical.
TEST_F(swarm, a_peer_accusing_an_honest_reducer_with_a_forged_proof_is_banned_by_the_others) {
  auto config = write_config(20, 4);
  for (int i = 0; i < 3; ++i)
    start_peer(i, config);
  start_peer(3, config,
             {"--set", "debug.byzantine=\"false_accuser\"", "--set", "debug.allow_byzantine=true",
              "--set", "averaging.audit_probability=1", "--set", "train.steps=1000000"});
  for (int i = 0; i < 3; ++i)
    expect_exit_ok(i);
  peers[3]->send_signal(SIGKILL);
  expect_identical_at(20, {0, 1, 2});
  size_t refused_proofs = 0;
  for (int i = 0; i < 3; ++i) {
    const auto& peer = *peers[static_cast<size_t>(i)];
    const auto& out = peer.output();
    refused_proofs += peer.count_in_output("with a forged proof");
    EXPECT_EQ(out.find("discarded: reducer"), std::string::npos) << out;
    EXPECT_EQ(out.find("lied about its part"), std::string::npos) << out;
    EXPECT_EQ(out.find("a later round was applied since"), std::string::npos) << out;
  }
  EXPECT_GE(refused_proofs, 3u);
  // Every honest member bans it, the accused too (members that disagreed on whom they left out
  // would follow different leaders and split).
  for (int i = 0; i < 3; ++i) {
    const auto& peer = *peers[static_cast<size_t>(i)];
    EXPECT_EQ(peer.count_in_output("banned for 600 s (it accused a reducer with a forged proof"),
              1u)
      << peer.output();
  }
}

// A hostile leader (a key ground to come first in the leader order of the first epochs) takes
// every join and never answers. Each honest peer loses one matchmaking to it and then skips it:
// they train on together under the next leader and end identical.
TEST_F(swarm, a_leader_that_never_answers_costs_one_matchmaking_not_one_per_epoch) {
  auto config = write_config(20, 4);
  auto write_key = [&](const peer_key& key, const std::string& name) {
    auto file = dir.path() / name;
    write_text_file(file, to_hex(key.seed()) + "\n");
    std::filesystem::permissions(file, std::filesystem::perms::owner_read |
                                         std::filesystem::perms::owner_write);
    return file;
  };
  std::vector<std::string> ids;
  std::vector<std::filesystem::path> honest_keys;
  for (int i = 0; i < 3; ++i) {
    auto key = peer_key::generate();
    ids.push_back(peer_id_of(key.public_part()));
    honest_keys.push_back(write_key(key, "honest" + std::to_string(i) + ".key"));
  }
  std::optional<peer_key> hostile;
  while (!hostile) {
    auto key = peer_key::generate();
    auto with = ids;
    with.push_back(peer_id_of(key.public_part()));
    bool first = true;
    for (int64_t epoch = 0; epoch < 3; ++epoch)
      first = first && leader_order(with, epoch)[0] == with.back();
    if (first)
      hostile = key;
  }
  auto key_file = write_key(*hostile, "hostile.key");
  // A join to the silent leader times out after the matchmaking time plus this.
  for (int i = 0; i < 3; ++i)
    start_peer(i, config,
               {"--set", "averaging.request_timeout=3", "--set",
                "network.identity_file=\"" + honest_keys[static_cast<size_t>(i)].string() + "\""});
  // It stays (alone it trains fast and would otherwise finish first and leave).
  start_peer(3, config, {"--set", "network.identity_file=\"" + key_file.string() + "\"",
                         "--set", "debug.byzantine=\"silent_leader\"", "--set",
                         "debug.allow_byzantine=true", "--set", "train.steps=1000000"});
  for (int i = 0; i < 3; ++i)
    expect_exit_ok(i);
  peers[3]->send_signal(SIGKILL);
  expect_identical_at(20, {0, 1, 2});
  size_t skipped = 0;
  for (int i = 0; i < 3; ++i) {
    const auto times =
      peers[static_cast<size_t>(i)]->count_in_output("took the join and never answered");
    EXPECT_LE(times, 1u) << peers[static_cast<size_t>(i)]->output();
    skipped += times;
  }
  EXPECT_GE(skipped, 1u);
}

} // namespace
} // namespace ddactor::testing
