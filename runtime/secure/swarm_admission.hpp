#pragma once
// Who may join this peer's swarm, as the run file and environment say: the swarm key (from
// network.swarm_key_file, else the DDACTOR_SWARM_KEY environment variable; never in the run file
// itself), the allowlist of public keys, or an open swarm the user asked for (network.open).
// A networked run with none of them is refused with a message that says what to do.

#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string_view>

#include "config/run_config.hpp"
#include "runtime/secure/handshake.hpp"

namespace ddactor {

/// The swarm key or allowlist is missing, unreadable or malformed (the message names the file
/// or variable and the fix).
class admission_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// A swarm key file: 64 hex characters (and a newline); refused when others may read it.
symmetric_key read_swarm_key(const std::filesystem::path& file);

/// Writes a fresh random swarm key to `file` (mode 0600; an existing file is not replaced).
void write_new_swarm_key(const std::filesystem::path& file);

/// The admission policy of a run. `environment_key` is DDACTOR_SWARM_KEY's value (null: unset).
admission_policy admission_of_run(const network_section& network, const char* environment_key);

/// The swarm key from `file` (when not empty) or from `environment_key`; nullopt when neither.
std::optional<symmetric_key> swarm_key_from(const std::filesystem::path& file,
                                            const char* environment_key);

} // namespace ddactor
