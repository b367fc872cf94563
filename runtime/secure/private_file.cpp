// Permission checks of secret files; see private_file.hpp.
#include "runtime/secure/private_file.hpp"

#include <sys/stat.h>

namespace ddactor {

bool readable_by_others(const std::filesystem::path& file) {
  struct stat info {};
  return ::stat(file.c_str(), &info) == 0 && (info.st_mode & 077) != 0;
}

} // namespace ddactor
