// Child processes and temp folders for multi-process tests; see process.hpp.
#include "tests/e2e/process.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace ddactor::testing {

child_process::child_process(const std::string& program, const std::vector<std::string>& args,
                             const std::filesystem::path& log_file,
                             const std::filesystem::path& cwd)
  : log_file_(log_file) {
  std::filesystem::create_directories(log_file.parent_path());
  std::vector<std::string> argv_storage{program};
  argv_storage.insert(argv_storage.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argv_storage)
    argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_ = ::fork();
  if (pid_ < 0)
    throw std::runtime_error("fork failed");
  if (pid_ == 0) {
    int fd = ::open(log_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
      ::dup2(fd, STDOUT_FILENO);
      ::dup2(fd, STDERR_FILENO);
      ::close(fd);
    }
    if (!cwd.empty() && ::chdir(cwd.c_str()) != 0)
      ::_exit(126);
    // Die with the test runner, so a crashed test leaves no peers behind.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    // Peers of one test are one swarm: they share its key (a test of admission sets its own).
    ::setenv("DDACTOR_SWARM_KEY", test_swarm_key, /*overwrite=*/0);
    ::execv(program.c_str(), argv.data());
    ::_exit(127);
  }
}

child_process::~child_process() {
  if (running()) {
    ::kill(pid_, SIGKILL);
    wait_for(std::chrono::seconds(10));
  }
}

void child_process::send_signal(int signal) {
  if (!exit_code_)
    ::kill(pid_, signal);
}

std::optional<int> child_process::wait_for(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!exit_code_) {
    int status = 0;
    auto r = ::waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      break;
    }
    if (std::chrono::steady_clock::now() >= deadline)
      break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return exit_code_;
}

bool child_process::running() {
  return !wait_for(std::chrono::milliseconds(0)).has_value();
}

std::string child_process::output() const {
  return read_text_file(log_file_);
}

bool child_process::wait_for_output(const std::string& needle, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (output().find(needle) != std::string::npos)
      return true;
    if (!running())
      return output().find(needle) != std::string::npos;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

size_t child_process::count_in_output(const std::string& needle) const {
  auto text = output();
  size_t count = 0;
  for (auto pos = text.find(needle); pos != std::string::npos; pos = text.find(needle, pos + 1))
    ++count;
  return count;
}

temp_directory::temp_directory(const std::string& name) {
  // A parameterized test's name ("test/param") would make a nested folder whose parent outlives it.
  auto flat = name;
  std::replace(flat.begin(), flat.end(), '/', '_');
  path_ = std::filesystem::temp_directory_path() /
          ("ddactor_e2e_" + flat + "_" + std::to_string(::getpid()));
  std::filesystem::remove_all(path_);
  std::filesystem::create_directories(path_);
}

temp_directory::~temp_directory() {
  if (::testing::Test::HasFailure() || std::getenv("DDACTOR_KEEP_TEST_DIRS") != nullptr) {
    std::cerr << "kept for inspection: " << path_ << "\n";
    return;
  }
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

cpu_burners::cpu_burners(int count, const std::filesystem::path& log_dir) {
  for (int i = 0; i < count; ++i)
    burners_.push_back(std::make_unique<child_process>(
      "/bin/sh", std::vector<std::string>{"-c", "while :; do :; done"},
      log_dir / ("burner" + std::to_string(i) + ".log")));
}

void write_text_file(const std::filesystem::path& path, const std::string& text) {
  std::filesystem::create_directories(path.parent_path());
  std::ofstream(path) << text;
}

int run_ddactor(const std::vector<std::string>& args, const std::filesystem::path& log_file,
                std::chrono::seconds timeout) {
  child_process child(DDACTOR_BINARY, args, log_file);
  auto code = child.wait_for(timeout);
  if (!code) {
    child.send_signal(SIGKILL);
    child.wait_for(std::chrono::seconds(10));
    return -1;
  }
  return *code;
}

std::string read_text_file(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

uint16_t free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

std::string tiny_run_config(const std::filesystem::path& run_dir, int64_t steps) {
  return "[run]\nname = \"e2e\"\ndir = \"" + run_dir.string() +
         "\"\nseed = 3\nthreads = 1\n"
         "[model]\nhidden_size = 32\ndepth = 1\nnum_heads = 2\npatch_size = 7\n"
         "[data]\nbatch_size = 16\nprefetch = 2\n"
         "[train]\nsteps = " +
         std::to_string(steps) +
         "\nwarmup_steps = 2\nlog_every = 5\ncheckpoint_every = 10\nkeep_checkpoints = 3\n"
         "sample_every = 0\n"
         "[sample]\nsteps = 2\nper_class = 2\nsampler = \"euler\"\n";
}

} // namespace ddactor::testing
