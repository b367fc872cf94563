#pragma once
// Starting and stopping real ddactor processes in multi-process tests: each child's stdout and
// stderr go to a log file the test can search; the destructor SIGKILLs what is still running so
// a failed test leaves nothing behind.

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace ddactor::testing {

/// The swarm key every child gets in DDACTOR_SWARM_KEY (unless the test process sets one), so
/// that the peers a test starts admit each other; tests of admission give others in run files.
inline constexpr const char* test_swarm_key =
  "5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e";

class child_process {
 public:
  /// Starts `program` with `args`, output to `log_file`, working directory `cwd` (empty: ours).
  child_process(const std::string& program, const std::vector<std::string>& args,
                const std::filesystem::path& log_file, const std::filesystem::path& cwd = {});
  ~child_process();
  child_process(const child_process&) = delete;
  child_process& operator=(const child_process&) = delete;

  pid_t pid() const { return pid_; }
  void send_signal(int signal);
  /// The exit code (128 + signal when killed), or nothing if still running after `timeout`.
  std::optional<int> wait_for(std::chrono::milliseconds timeout);
  bool running();
  /// Everything the process wrote so far.
  std::string output() const;
  /// Polls the output until it contains `needle`; false on timeout or when the process exits
  /// without writing it.
  bool wait_for_output(const std::string& needle, std::chrono::milliseconds timeout);
  /// How often `needle` appears in the output.
  size_t count_in_output(const std::string& needle) const;

 private:
  pid_t pid_ = -1;
  std::optional<int> exit_code_;
  std::filesystem::path log_file_;
};

/// Processes that keep cores busy (`sh -c 'while :; do :; done'`), as other work on a shared
/// volunteer machine does: for tests that must hold on a loaded machine. Killed on destruction.
class cpu_burners {
 public:
  explicit cpu_burners(int count, const std::filesystem::path& log_dir);

 private:
  std::vector<std::unique_ptr<child_process>> burners_;
};

/// A fresh directory under the system temp folder, removed on destruction unless the test failed
/// (then kept, and its path printed, for post-mortems).
class temp_directory {
 public:
  explicit temp_directory(const std::string& name);
  ~temp_directory();
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

/// Writes `text` to `path` (creating folders).
void write_text_file(const std::filesystem::path& path, const std::string& text);

/// Runs the ddactor binary to completion; returns the exit code (or -1 on timeout, after SIGKILL).
int run_ddactor(const std::vector<std::string>& args, const std::filesystem::path& log_file,
                std::chrono::seconds timeout = std::chrono::seconds(300));

/// The run file of a tiny single-peer run on Fashion-MNIST (a 1-block DiT, batch 16, one thread;
/// checkpoints every 10 steps, the newest 3 kept; no sample grids), trained for `steps` steps.
std::string tiny_run_config(const std::filesystem::path& run_dir, int64_t steps);

/// A TCP port on 127.0.0.1 that was free a moment ago.
uint16_t free_port();

/// Reads a whole file (empty if missing).
std::string read_text_file(const std::filesystem::path& path);

} // namespace ddactor::testing
