#pragma once
// Where a run keeps its checkpoints and how they are named: <run dir>/checkpoints/
// step_<12 digits>.safetensors, so that names sort by step. Listing and pruning only; the content
// is models/checkpoint.hpp's business.

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace ddactor {

struct checkpoint_file {
  std::filesystem::path path;
  int64_t step = 0;
};

std::filesystem::path checkpoint_directory(const std::filesystem::path& run_dir);
std::filesystem::path checkpoint_path(const std::filesystem::path& run_dir, int64_t step);

/// The model and optimizer tensors of a checkpoint file, by name, as raw bytes: what the peers
/// of one run hold bit for bit alike (its other entries describe the peer that wrote it).
std::map<std::string, std::vector<std::byte>> shared_state_tensors(
  const std::filesystem::path& file);

/// Checkpoint files of a run, oldest first; other files are ignored. Missing folder: empty.
std::vector<checkpoint_file> list_checkpoints(const std::filesystem::path& run_dir);

/// Removes all but the newest `keep` checkpoints; returns the paths removed.
std::vector<std::filesystem::path> prune_checkpoints(const std::filesystem::path& run_dir,
                                                     int keep);

} // namespace ddactor
