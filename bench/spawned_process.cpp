// Child processes for the swarm benchmarks; see spawned_process.hpp.
#include "bench/spawned_process.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

namespace ddactor {

spawned_process::spawned_process(const std::string& program, const std::vector<std::string>& args,
                                 const std::filesystem::path& log_file)
  : log_file_(log_file) {
  if (log_file.has_parent_path())
    std::filesystem::create_directories(log_file.parent_path());
  std::vector<std::string> storage{program};
  storage.insert(storage.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : storage)
    argv.push_back(a.data());
  argv.push_back(nullptr);
  const pid_t parent = ::getpid();
  pid_ = ::fork();
  if (pid_ < 0)
    throw spawned_process_error("fork failed for " + program + ": " + std::strerror(errno));
  if (pid_ == 0) {
    // The child: no benchmark may leave peers running when it dies.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent)
      ::_exit(127);
    int in = ::open("/dev/null", O_RDONLY);
    int out = ::open(log_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (in < 0 || out < 0)
      ::_exit(127);
    ::dup2(in, 0);
    ::dup2(out, 1);
    ::dup2(out, 2);
    ::setenv("DDACTOR_SWARM_KEY", bench_swarm_key, /*overwrite=*/0);
    ::execv(program.c_str(), argv.data());
    ::_exit(127);
  }
}

spawned_process::~spawned_process() {
  if (running()) {
    ::kill(pid_, SIGKILL);
    wait_for(std::chrono::seconds(10));
  }
}

void spawned_process::send_signal(int signal) {
  if (!exit_code_)
    ::kill(pid_, signal);
}

std::string spawned_process::describe_exit(std::optional<int> code) const {
  return (code ? "exit " + std::to_string(*code) : std::string("timeout")) + " (log: " +
         log_file_.string() + ")";
}

std::optional<int> spawned_process::wait_for(std::chrono::milliseconds timeout) {
  auto until = std::chrono::steady_clock::now() + timeout;
  while (!exit_code_) {
    int status = 0;
    pid_t r = ::waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      break;
    }
    if (r < 0) {
      exit_code_ = -1;
      break;
    }
    if (std::chrono::steady_clock::now() >= until)
      break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return exit_code_;
}

bool spawned_process::running() {
  return !wait_for(std::chrono::milliseconds(0)).has_value();
}

std::string spawned_process::output() const {
  return read_whole_file(log_file_);
}

uint16_t free_loopback_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    throw spawned_process_error(std::string("socket: ") + std::strerror(errno));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    ::close(fd);
    throw spawned_process_error(std::string("no free loopback port: ") + std::strerror(errno));
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

std::string read_whole_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

std::vector<std::string> loopback_swarm_args(int index, uint16_t bootstrap_port) {
  const auto bootstrap = "127.0.0.1:" + std::to_string(bootstrap_port);
  if (index == 0)
    return {"--set", "network.listen=\"" + bootstrap + "\""};
  return {"--set", "network.listen=\"127.0.0.1:0\"", "--set",
          "network.initial_peers=[\"" + bootstrap + "\"]"};
}

} // namespace ddactor
