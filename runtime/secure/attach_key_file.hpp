#pragma once
// The run's attach key (<run dir>/attach.key): 32 random bytes as hex, mode 0600, written once
// by the peer when run.attach is on and kept across restarts, so that a trainer started with
// the same run file (and the same user's rights on the run folder) can attach. Whoever cannot
// read the file cannot attach (runtime/secure/attach_protocol.hpp).

#include <filesystem>
#include <stdexcept>

#include "runtime/secure/attach_protocol.hpp"

namespace ddactor {

class attach_key_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// The key in `file`, created (0600, never over another file) if it does not exist.
attach_key load_or_create_attach_key(const std::filesystem::path& file);

/// The key in `file`; throws attach_key_error when it is missing, readable by other users or
/// not a key.
attach_key read_attach_key(const std::filesystem::path& file);

} // namespace ddactor
