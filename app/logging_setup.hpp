#pragma once
// spdlog for the whole process: readable lines on stderr, and a copy in <run dir>/ddactor.log
// when a run directory is given.

#include <filesystem>
#include <string>

namespace ddactor {

/// level: trace, debug, info, warn, error.
void setup_logging(const std::string& level, const std::filesystem::path& log_file = {});

} // namespace ddactor
