#pragma once
// Secrets (peer keys, swarm keys, API tokens) are read only from files other users cannot read,
// as ssh does with its keys: a loose file is refused with "run chmod 600 on it".

#include <filesystem>

namespace ddactor {

/// Whether the group or other users have any permission on `file` (false where it cannot be
/// examined: reading it will fail with its own error).
bool readable_by_others(const std::filesystem::path& file);

} // namespace ddactor
