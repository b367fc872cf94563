#pragma once
// Child processes for the swarm benchmarks (peers on loopback): each child's stdout and stderr go
// to a log file the benchmark reads back; the child dies with the benchmark (PR_SET_PDEATHSIG),
// and the destructor SIGKILLs and reaps what is still running, so an interrupted benchmark leaves
// no peers behind. Peers inside a network lab are started by netlab::spawn instead.

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace ddactor {

class spawned_process_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class spawned_process {
 public:
  /// Starts `program` with `args`; stdin from /dev/null, stdout and stderr to `log_file`
  /// (created, with its folder). Throws spawned_process_error when fork fails.
  spawned_process(const std::string& program, const std::vector<std::string>& args,
                  const std::filesystem::path& log_file);
  ~spawned_process();
  spawned_process(const spawned_process&) = delete;
  spawned_process& operator=(const spawned_process&) = delete;

  pid_t pid() const { return pid_; }
  const std::filesystem::path& log_file() const { return log_file_; }
  void send_signal(int signal);
  /// The exit code (128 + signal when killed), or nothing if still running after `timeout`.
  std::optional<int> wait_for(std::chrono::milliseconds timeout);
  /// What a wait_for result that is not a clean exit says: "exit N (log: ...)" or "timeout (log:
  /// ...)".
  std::string describe_exit(std::optional<int> code) const;
  bool running();
  /// Everything the process wrote so far.
  std::string output() const;

 private:
  pid_t pid_ = -1;
  std::optional<int> exit_code_;
  std::filesystem::path log_file_;
};

/// The swarm key every spawned process gets in DDACTOR_SWARM_KEY (unless the benchmark's own
/// environment sets one), so that the peers of a benchmark admit each other over sealed links,
/// as a real swarm's do.
inline constexpr const char* bench_swarm_key =
  "b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3";

/// A TCP port on 127.0.0.1 that was free a moment ago.
uint16_t free_loopback_port();

/// The --set arguments that put peer `index` of a loopback swarm on the network: peer 0 listens
/// on `bootstrap_port`, the others on any port and join through it. They admit each other by
/// the swarm key every spawned process gets (bench_swarm_key).
std::vector<std::string> loopback_swarm_args(int index, uint16_t bootstrap_port);

/// Reads a whole file (empty when missing).
std::string read_whole_file(const std::filesystem::path& path);

} // namespace ddactor
