// What a new user meets when a value is wrong or a command takes long, with the real binary:
// values that used to pass and then crash, hang or quietly do the wrong thing are refused at the
// start with one line naming the key; a failure that repeats itself after a restart ends the run
// instead of five restarts; long commands show progress and stop on SIGTERM; a peer whose
// bootstrap peer is gone does not repeat the same warning forever.
#include <gtest/gtest.h>

#include <csignal>

#include "tests/e2e/process.hpp"

namespace ddactor::testing {
namespace {

using namespace std::chrono_literals;

std::string tiny_config(const std::filesystem::path& run_dir, int64_t steps) {
  return "[run]\nname = \"e2e\"\ndir = \"" + run_dir.string() +
         "\"\nseed = 3\nthreads = 1\n"
         "[model]\nhidden_size = 32\ndepth = 1\nnum_heads = 2\npatch_size = 7\n"
         "[data]\nbatch_size = 16\nprefetch = 2\n"
         "[train]\nsteps = " + std::to_string(steps) +
         "\nwarmup_steps = 2\nlog_every = 5\ncheckpoint_every = 10\nsample_every = 0\n"
         "[sample]\nsteps = 2\nper_class = 2\nsampler = \"euler\"\n";
}

class user_errors : public ::testing::Test {
 protected:
  temp_directory dir{::testing::UnitTest::GetInstance()->current_test_info()->name()};
  std::filesystem::path run_dir = dir.path() / "run";
  std::filesystem::path config = dir.path() / "run.toml";
  std::filesystem::path log(const std::string& name) { return dir.path() / (name + ".log"); }

  // Runs ddactor; returns (exit code, output).
  std::pair<int, std::string> ddactor(std::vector<std::string> args, const std::string& name,
                                      std::chrono::seconds timeout = 120s) {
    const int code = run_ddactor(args, log(name), timeout);
    return {code, read_text_file(log(name))};
  }
};

TEST_F(user_errors, impossible_values_are_refused_at_the_start_naming_the_key) {
  write_text_file(config, tiny_config(run_dir, 5));
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
    {{"--set", "run.device=\"cuda\""}, "run.device = \"cuda\": this ddactor was built without CUDA"},
    {{"--set", "run.threads=100000"}, "key 'run.threads': must be in [0, 1024]"},
    {{"--set", "data.batch_size=2000000000"}, "key 'data.batch_size': must be in [1, 65536]"},
    {{"--set", "model.hidden_size=1000000"}, "key 'model.hidden_size': must be in [1, 16384]"},
    {{"--set", "train.lr=1e300"}, "key 'train.lr': must be in (0, 1]"},
    {{"--set", "run.name=\"../../evil\""}, "key 'run.name': must be a plain name"},
    {{"--set", "data.resolution=4096", "--set", "model.patch_size=4"},
     "key 'data.resolution': training this model needs about"},
  };
  for (const auto& [extra, words] : cases) {
    std::vector<std::string> args{"--config", config.string()};
    args.insert(args.end(), extra.begin(), extra.end());
    const auto [code, out] = ddactor(args, "refused");
    EXPECT_EQ(code, 2) << extra.back() << ":\n" << out;
    EXPECT_NE(out.find(words), std::string::npos) << extra.back() << ":\n" << out;
    EXPECT_EQ(out.find("frame #"), std::string::npos) << "a stack trace:\n" << out;
    EXPECT_LT(std::count(out.begin(), out.end(), '\n'), 4) << out;
  }
  EXPECT_FALSE(std::filesystem::exists(dir.path() / "evil"));
}

TEST_F(user_errors, sample_refuses_counts_and_guidance_that_make_no_sense) {
  write_text_file(config, tiny_config(run_dir, 5));
  ASSERT_EQ(ddactor({"--config", config.string()}, "train").first, 0);
  for (const auto& bad : std::vector<std::vector<std::string>>{
         {"--count", "0"}, {"--count", "-3"}, {"--cfg", "nan"}, {"--cfg", "inf"}, {"--steps", "0"}}) {
    std::vector<std::string> args{"sample", "--config", config.string(), "--out",
                                  (dir.path() / "grid.png").string()};
    args.insert(args.end(), bad.begin(), bad.end());
    const auto [code, out] = ddactor(args, "sample");
    EXPECT_EQ(code, 2) << bad[0] << " " << bad[1] << ":\n" << out;
    EXPECT_FALSE(std::filesystem::exists(dir.path() / "grid.png")) << bad[0] << " " << bad[1];
  }
}

TEST_F(user_errors, a_failure_that_repeats_after_a_restart_ends_the_run_at_once) {
  write_text_file(config, tiny_config(run_dir, 40));
  const auto [code, out] = ddactor({"--config", config.string(), "--set",
                                    "debug.crash_trainer_at_step=3", "--set",
                                    "debug.crash_trainer_every_time=true"},
                                   "repeat");
  EXPECT_NE(code, 0) << out;
  EXPECT_NE(out.find("failed again the same way after a restart; giving up"), std::string::npos)
    << out;
  size_t restarts = 0;
  for (size_t at = out.find("restarting in"); at != std::string::npos;
       at = out.find("restarting in", at + 1))
    ++restarts;
  EXPECT_EQ(restarts, 1u) << out;
}

// The final sample grid of a large model took minutes, silent, and ignored SIGTERM.
TEST_F(user_errors, long_sampling_shows_progress_and_stops_on_sigterm) {
  write_text_file(config, tiny_config(run_dir, 5));
  ASSERT_EQ(ddactor({"--config", config.string()}, "train").first, 0);
  child_process sample(DDACTOR_BINARY,
                       {"sample", "--config", config.string(), "--steps", "1000", "--count", "64",
                        "--out", (dir.path() / "grid.png").string()},
                       log("sample"));
  ASSERT_TRUE(sample.wait_for_output("ETA", 120s)) << sample.output();
  sample.send_signal(SIGTERM);
  const auto code = sample.wait_for(30s);
  ASSERT_TRUE(code.has_value()) << "did not stop on SIGTERM:\n" << sample.output();
  EXPECT_EQ(*code, 128 + SIGTERM) << sample.output();
  EXPECT_NE(sample.output().find("stopped by SIGTERM"), std::string::npos) << sample.output();
  EXPECT_FALSE(std::filesystem::exists(dir.path() / "grid.png"));
}

TEST_F(user_errors, a_gone_bootstrap_peer_is_not_dialed_forever) {
  // Nothing listens at the bootstrap address: warnings thin out (1st, 2nd, 4th failure ...).
  write_text_file(config, tiny_config(run_dir, 100000));
  child_process alone(DDACTOR_BINARY,
                      {"--config", config.string(), "--set", "network.listen=\"127.0.0.1:0\"",
                       "--set", "train.target_batch_size=64", "--set",
                       "network.bootstrap_retry=0.2", "--set",
                       "network.initial_peers=[\"127.0.0.1:" + std::to_string(free_port()) + "\"]"},
                      log("alone"));
  std::this_thread::sleep_for(8s);
  alone.send_signal(SIGINT);
  ASSERT_TRUE(alone.wait_for(60s).has_value()) << alone.output();
  // Over 8 s at 0.2 s a retry, the warning came 40 times before; now once per doubling.
  EXPECT_LE(alone.count_in_output("cannot join through"), 6u) << alone.output();
  EXPECT_GE(alone.count_in_output("cannot join through"), 1u) << alone.output();
}

} // namespace
} // namespace ddactor::testing
