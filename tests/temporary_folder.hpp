#pragma once
// An empty folder of a test's own under the system's temporary directory, removed with everything
// in it when the test ends (pass or fail): suites run often, and /tmp must not fill up.

#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <string>
#include <system_error>

namespace ddactor::testing {

class temporary_folder {
public:
  /// `prefix` names the folder's owner ("ddactor_diffusers"); the process id and a counter keep
  /// concurrent and successive folders apart.
  explicit temporary_folder(const std::string& prefix) {
    static std::atomic<int> counter{0};
    path_ = std::filesystem::temp_directory_path() /
            (prefix + "_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~temporary_folder() {
    std::error_code ignored;
    // A test may have left the folder read-only; removing its files needs write permission.
    std::filesystem::permissions(path_, std::filesystem::perms::owner_all,
                                 std::filesystem::perm_options::add, ignored);
    std::filesystem::remove_all(path_, ignored);
  }
  temporary_folder(const temporary_folder&) = delete;
  temporary_folder& operator=(const temporary_folder&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

private:
  std::filesystem::path path_;
};

} // namespace ddactor::testing
