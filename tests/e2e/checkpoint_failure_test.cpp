// A run never reports success without its work on disk: a checkpoint that cannot be written is
// retried with backoff while /healthz says so and ddactor_checkpoint_failing is 1, the run goes
// on and saves once the disk works again; a run that cannot save its final checkpoint exits
// non-zero; temporary files of writers killed mid-write are removed at the next start. The
// failing disk is a file standing where the checkpoints folder should be (root ignores
// permissions), or, where this process may mount, a full 2 MB tmpfs.
#include <gtest/gtest.h>

#include <httplib.h>
#include <unistd.h>

#include <fstream>

#include "runtime/checkpoint_files.hpp"
#include "tests/e2e/process.hpp"

namespace ddactor::testing {
namespace {

using namespace std::chrono_literals;

std::string config_text(const std::filesystem::path& run_dir, int64_t steps, uint16_t metrics_port) {
  return "[run]\nname = \"e2e\"\ndir = \"" + run_dir.string() +
         "\"\nseed = 3\nthreads = 1\n"
         "[model]\nhidden_size = 32\ndepth = 1\nnum_heads = 2\npatch_size = 7\n"
         "[data]\nbatch_size = 16\nprefetch = 2\n"
         "[train]\nsteps = " + std::to_string(steps) +
         "\nwarmup_steps = 2\nlog_every = 5\ncheckpoint_every = 5\nkeep_checkpoints = 3\n"
         "sample_every = 0\n"
         "[sample]\nsteps = 2\nper_class = 2\nsampler = \"euler\"\n"
         "[monitoring]\nlisten = \"127.0.0.1:" + std::to_string(metrics_port) + "\"\n";
}

std::string get(uint16_t port, const std::string& path, int* status = nullptr) {
  httplib::Client client("127.0.0.1", port);
  client.set_connection_timeout(2);
  client.set_read_timeout(5);
  auto response = client.Get(path);
  if (status)
    *status = response ? response->status : -1;
  return response ? response->body : std::string();
}

class checkpoint_failure : public ::testing::Test {
 protected:
  temp_directory dir{::testing::UnitTest::GetInstance()->current_test_info()->name()};
  std::filesystem::path run_dir = dir.path() / "run";
  std::filesystem::path config = dir.path() / "run.toml";
  uint16_t metrics_port = free_port();

  // Where the checkpoints folder should be, a file: every checkpoint write fails.
  void block_checkpoints() {
    std::filesystem::create_directories(run_dir);
    std::ofstream(checkpoint_directory(run_dir)) << "not a folder";
  }
};

TEST_F(checkpoint_failure, a_failing_checkpoint_is_retried_reported_and_saved_once_the_disk_works) {
  write_text_file(config, config_text(run_dir, 400, metrics_port));
  block_checkpoints();
  child_process peer(DDACTOR_BINARY, {"--config", config.string()}, dir.path() / "peer.log");
  ASSERT_TRUE(peer.wait_for_output("retrying in", 120s)) << peer.output();
  int status = 0;
  std::string health;
  for (int i = 0; i < 100 && health.find("checkpoint") == std::string::npos; ++i) {
    health = get(metrics_port, "/healthz", &status);
    std::this_thread::sleep_for(50ms);
  }
  EXPECT_EQ(status, 503) << health;
  EXPECT_NE(health.find("cannot be written"), std::string::npos) << health;
  EXPECT_NE(get(metrics_port, "/metrics").find("ddactor_checkpoint_failing 1"), std::string::npos);

  std::filesystem::remove(checkpoint_directory(run_dir));  // the disk works again
  ASSERT_TRUE(peer.wait_for_output("checkpoints are written again", 120s)) << peer.output();
  health = get(metrics_port, "/healthz", &status);
  EXPECT_EQ(status, 200) << health;
  EXPECT_NE(get(metrics_port, "/metrics").find("ddactor_checkpoint_failing 0"), std::string::npos);
  ASSERT_EQ(peer.wait_for(180s), 0) << peer.output();
  EXPECT_FALSE(list_checkpoints(run_dir).empty());
  EXPECT_EQ(list_checkpoints(run_dir).back().step, 400);
}

TEST_F(checkpoint_failure, a_run_that_cannot_save_its_final_checkpoint_exits_non_zero) {
  write_text_file(config, config_text(run_dir, 12, metrics_port));
  block_checkpoints();
  const auto log = dir.path() / "peer.log";
  const int code = run_ddactor({"--config", config.string()}, log, 180s);
  const auto out = read_text_file(log);
  EXPECT_NE(code, 0) << out;
  EXPECT_NE(out.find("the final checkpoint (at step 12) could not be written"), std::string::npos)
    << out;
  EXPECT_EQ(out.find("done; checkpoints in"), std::string::npos) << out;
  // One trainer, not five restarts of it: a restart cannot mend a disk.
  EXPECT_EQ(out.find("restarting in"), std::string::npos) << out;
}

// Where this process may make a private mount, the real thing: a tmpfs too small for one
// checkpoint.
TEST_F(checkpoint_failure, a_full_disk_ends_the_run_with_an_error_not_with_done) {
  if (::geteuid() != 0 || std::system("unshare -m true 2>/dev/null") != 0)
    GTEST_SKIP() << "needs root and mount namespaces (unshare -m) for a private tmpfs";
  write_text_file(config, config_text(run_dir, 12, metrics_port));
  std::filesystem::create_directories(checkpoint_directory(run_dir));
  // Fill all but a little of a 2 MB tmpfs; a checkpoint of the tiny model is larger than that.
  const std::string script =
    "mount -t tmpfs -o size=2m tmpfs '" + checkpoint_directory(run_dir).string() +
    "' && head -c 1900000 /dev/zero > '" + (checkpoint_directory(run_dir) / "filler").string() +
    "' && exec '" + std::string(DDACTOR_BINARY) + "' --config '" + config.string() + "'";
  const auto log = dir.path() / "peer.log";
  child_process peer("/usr/bin/unshare", {"-m", "--propagation", "private", "sh", "-c", script},
                     log);
  const auto code = peer.wait_for(180s);
  ASSERT_TRUE(code.has_value()) << peer.output();
  EXPECT_NE(*code, 0) << peer.output();
  EXPECT_NE(peer.output().find("No space left on device"), std::string::npos) << peer.output();
  EXPECT_EQ(peer.output().find("done; checkpoints in"), std::string::npos) << peer.output();
}

TEST_F(checkpoint_failure, temporaries_of_writers_killed_mid_write_are_removed_at_start) {
  write_text_file(config, config_text(run_dir, 5, metrics_port));
  const auto folder = checkpoint_directory(run_dir);
  std::filesystem::create_directories(folder);
  // What a writer killed by SIGKILL leaves: its pid (4194305: above any Linux pid) is gone.
  std::ofstream(folder / ".step_000000000010.safetensors.tmp-4194305-0") << std::string(5000, 'x');
  const auto log = dir.path() / "peer.log";
  ASSERT_EQ(run_ddactor({"--config", config.string()}, log), 0) << read_text_file(log);
  EXPECT_FALSE(std::filesystem::exists(folder / ".step_000000000010.safetensors.tmp-4194305-0"));
  EXPECT_NE(read_text_file(log).find("removed 1 unfinished checkpoint file"), std::string::npos)
    << read_text_file(log);
}

} // namespace
} // namespace ddactor::testing
