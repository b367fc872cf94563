// End-to-end tests of several trainers in one peer (run.trainers): the real binary with 2
// trainers of batch B ends where 1 trainer of batch 2B ends on the same data and seed; a
// trainer that crashes mid-run takes its set down, the set restarts from the checkpoint and the
// run finishes with no step or data lost; Ctrl-C checkpoints and the run resumes; a time limit
// ends every trainer at the same step.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstring>

#include "runtime/checkpoint_files.hpp"
#include "runtime/safetensors.hpp"
#include "tests/e2e/checkpoint_compare.hpp"
#include "tests/e2e/process.hpp"

namespace ddactor::testing {
namespace {

using namespace std::chrono_literals;

class node_trainers : public ::testing::Test {
 protected:
  temp_directory dir{::testing::UnitTest::GetInstance()->current_test_info()->name()};
  std::filesystem::path log(const std::string& name) { return dir.path() / (name + ".log"); }
  std::filesystem::path config(const std::string& name, int64_t steps) {
    auto path = dir.path() / (name + ".toml");
    write_text_file(path, tiny_run_config(dir.path() / name, steps));
    return path;
  }
};

// The two trainers also run their slices in micro-batches of 5 (5 + 5 + 5 + 1): the same
// steps again (data.micro_batch_size).
TEST_F(node_trainers, two_trainers_in_micro_batches_end_where_one_with_twice_the_batch_ends) {
  constexpr int steps = 8;
  ASSERT_EQ(run_ddactor({"--config", config("two", steps).string(), "--set", "run.trainers=2",
                         "--set", "data.batch_size=16", "--set", "data.micro_batch_size=5"},
                        log("two")),
            0)
    << read_text_file(log("two"));
  ASSERT_EQ(run_ddactor({"--config", config("one", steps).string(), "--set",
                         "data.batch_size=32"},
                        log("one")),
            0)
    << read_text_file(log("one"));
  const auto two_log = read_text_file(log("two"));
  EXPECT_NE(two_log.find("2 trainers x 1 LibTorch threads"), std::string::npos) << two_log;
  EXPECT_NE(two_log.find("2 trainers in this peer"), std::string::npos) << two_log;
  EXPECT_NE(two_log.find("batches of 16 in micro-batches of 5"), std::string::npos) << two_log;

  const auto two = newest_checkpoint(dir.path() / "two");
  const auto one = newest_checkpoint(dir.path() / "one");
  EXPECT_EQ(two.metadata.at("step"), std::to_string(steps));
  EXPECT_EQ(one.metadata.at("step"), std::to_string(steps));
  EXPECT_EQ(two.metadata.at("data_position"), std::to_string(steps * 32));
  EXPECT_EQ(two.metadata.at("data_position"), one.metadata.at("data_position"));
  // Every weight, its EMA and AdamW's moments agree to float tolerance: the same examples, the
  // same noise per example, gradients summed in a different grouping.
  const auto difference = compare_checkpoints(one, two, 1e-5f);
  EXPECT_GT(difference.compared, 10);
  std::printf("largest relative difference over %d tensors after %d steps: %.3g\n",
              difference.compared, steps, static_cast<double>(difference.largest));
}

// A step that runs out of memory (injected: only one example at a time fits) restarts the
// trainers with half the micro-batch, six times (64, 32, ..., 2 fail; more restarts than the
// crash budget allows, as each tries less memory), and the run ends where a run one example at a
// time from the start ends: the same data, the same steps.
TEST_F(node_trainers, out_of_memory_halves_the_micro_batch_until_the_step_fits) {
  constexpr int steps = 4;
  ASSERT_EQ(run_ddactor({"--config", config("oom", steps).string(), "--set", "data.batch_size=64",
                         "--set", "debug.out_of_memory_above=1"},
                        log("oom")),
            0)
    << read_text_file(log("oom"));
  ASSERT_EQ(run_ddactor({"--config", config("fits", steps).string(), "--set",
                         "data.batch_size=64", "--set", "data.micro_batch_size=1"},
                        log("fits")),
            0)
    << read_text_file(log("fits"));
  const auto out = read_text_file(log("oom"));
  for (int at_once = 64; at_once >= 2; at_once /= 2) {
    EXPECT_NE(out.find("ran out of memory at step 1 with " + std::to_string(at_once) +
                       " examples at a time"),
              std::string::npos)
      << at_once << "\n" << out;
    EXPECT_NE(out.find("with micro-batches of " + std::to_string(at_once / 2) + " "),
              std::string::npos)
      << at_once << "\n" << out;
  }
  EXPECT_EQ(out.find("giving up"), std::string::npos) << out;
  const auto oom = newest_checkpoint(dir.path() / "oom");
  EXPECT_EQ(oom.metadata.at("step"), std::to_string(steps));
  EXPECT_EQ(oom.metadata.at("data_position"), std::to_string(steps * 64));
  compare_checkpoints(newest_checkpoint(dir.path() / "fits"), oom, 1e-6f);
}

TEST_F(node_trainers, a_crashed_trainer_restarts_the_set_from_the_checkpoint_and_loses_no_step) {
  ASSERT_EQ(run_ddactor({"--config", config("crash", 40).string(), "--set", "run.trainers=2",
                         "--set", "debug.crash_trainer_at_step=15", "--set",
                         "debug.crash_loader_after_batches=30"},
                        log("crash")),
            0)
    << read_text_file(log("crash"));
  const auto out = read_text_file(log("crash"));
  EXPECT_NE(out.find("injected trainer crash"), std::string::npos) << out;
  EXPECT_NE(out.find("trainer restarted"), std::string::npos) << out;
  EXPECT_NE(out.find("injected data loader crash"), std::string::npos) << out;
  EXPECT_NE(out.find("data_loader restarted"), std::string::npos) << out;
  // Rank 1 crashed; the set restarted from rank 0's step-10 checkpoint and went on to the end.
  EXPECT_NE(out.find("starting at step 10"), std::string::npos) << out;
  const auto last = newest_checkpoint(dir.path() / "crash");
  EXPECT_EQ(last.metadata.at("step"), "40");
  // 40 steps of 2 x 16 examples: every one seen once, in order (60000 per data pass).
  EXPECT_EQ(last.metadata.at("data_epoch"), "0");
  EXPECT_EQ(last.metadata.at("data_position"), std::to_string(40 * 32));
}

TEST_F(node_trainers, ctrl_c_checkpoints_the_set_and_a_restart_resumes) {
  const auto path = config("stop", 100000);
  child_process peer(DDACTOR_BINARY, {"--config", path.string(), "--set", "run.trainers=2"},
                     log("run"));
  ASSERT_TRUE(peer.wait_for_output("step 10/", 120s)) << peer.output();
  peer.send_signal(SIGINT);
  const auto code = peer.wait_for(60s);
  ASSERT_TRUE(code.has_value()) << "did not stop after SIGINT:\n" << peer.output();
  EXPECT_EQ(*code, 0) << peer.output();
  const auto stopped_at = list_checkpoints(dir.path() / "stop").back().step;
  EXPECT_GE(stopped_at, 10);
  ASSERT_EQ(run_ddactor({"--config", path.string(), "--set", "run.trainers=2", "--set",
                         "train.steps=" + std::to_string(stopped_at + 5)},
                        log("resume")),
            0)
    << read_text_file(log("resume"));
  const auto resumed = read_text_file(log("resume"));
  EXPECT_NE(resumed.find("starting at step " + std::to_string(stopped_at)), std::string::npos)
    << resumed;
  const auto last = newest_checkpoint(dir.path() / "stop");
  EXPECT_EQ(last.metadata.at("step"), std::to_string(stopped_at + 5));
  EXPECT_EQ(last.metadata.at("data_position"), std::to_string((stopped_at + 5) * 32));
}

TEST_F(node_trainers, a_time_limit_ends_every_trainer_at_the_same_step) {
  // Rank 0's clock decides for the set: had the ranks decided alone, one would wait in a sum for
  // a rank that had ended (and end with a warning).
  ASSERT_EQ(run_ddactor({"--config", config("timed", 0).string(), "--set", "run.trainers=2",
                         "--set", "train.max_seconds=2"},
                        log("timed")),
            0)
    << read_text_file(log("timed"));
  const auto out = read_text_file(log("timed"));
  EXPECT_NE(out.find("training finished"), std::string::npos) << out;
  EXPECT_EQ(out.find("of 2 ends"), std::string::npos) << out;
  const auto last = newest_checkpoint(dir.path() / "timed");
  const auto step = std::stoll(last.metadata.at("step"));
  EXPECT_GT(step, 0);
  EXPECT_EQ(last.metadata.at("data_position"), std::to_string(step * 32));
}

} // namespace
} // namespace ddactor::testing
