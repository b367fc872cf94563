#pragma once
// What the lab's swarm tests share: the swarm key, a real peer's command line, reading logs.
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace ddactor {

inline constexpr const char* lab_swarm_key =
  "4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a";

inline std::string read_text(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

/// Where a lab test keeps its logs: with DDACTOR_KEEP_TEST_DIRS set, a folder in the temp
/// directory that outlives the lab (named after the test); else empty (the lab's own, removed).
inline std::filesystem::path kept_lab_logs(const std::string& test_name) {
  if (std::getenv("DDACTOR_KEEP_TEST_DIRS") == nullptr)
    return {};
  auto dir = std::filesystem::temp_directory_path() / ("ddactor_lab_" + test_name);
  std::filesystem::remove_all(dir);
  return dir;
}

/// ddactor with `config`, its run folder `run_dir`, listening on port 7000 of every address.
inline std::vector<std::string> lab_peer_argv(const std::filesystem::path& config,
                                              const std::filesystem::path& run_dir) {
  return {DDACTOR_BINARY, "--config", config.string(),
          "--set",        "run.dir=\"" + run_dir.string() + "\"",
          "--set",        "network.listen=\"0.0.0.0:7000\""};
}

}  // namespace ddactor
