// Checkpoint naming, listing and pruning; see checkpoint_files.hpp.
#include "runtime/checkpoint_files.hpp"

#include <algorithm>
#include <cstdio>
#include <string>

#include "runtime/safetensors.hpp"

namespace ddactor {

namespace {

constexpr std::string_view prefix = "step_";
constexpr std::string_view suffix = ".safetensors";

std::optional<int64_t> step_of(const std::string& name) {
  if (name.size() != prefix.size() + 12 + suffix.size() || !name.starts_with(prefix) ||
      !name.ends_with(suffix))
    return std::nullopt;
  auto digits = name.substr(prefix.size(), 12);
  if (!std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return std::nullopt;
  return std::stoll(digits);
}

} // namespace

std::filesystem::path checkpoint_directory(const std::filesystem::path& run_dir) {
  return run_dir / "checkpoints";
}

std::filesystem::path checkpoint_path(const std::filesystem::path& run_dir, int64_t step) {
  char name[64];
  std::snprintf(name, sizeof(name), "step_%012lld.safetensors", static_cast<long long>(step));
  return checkpoint_directory(run_dir) / name;
}

std::vector<checkpoint_file> list_checkpoints(const std::filesystem::path& run_dir) {
  std::vector<checkpoint_file> out;
  std::error_code ec;
  auto dir = checkpoint_directory(run_dir);
  if (!std::filesystem::is_directory(dir, ec))
    return out;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    if (!entry.is_regular_file(ec))
      continue;
    if (auto step = step_of(entry.path().filename().string()))
      out.push_back({entry.path(), *step});
  }
  std::sort(out.begin(), out.end(),
            [](const checkpoint_file& a, const checkpoint_file& b) { return a.step < b.step; });
  return out;
}

std::vector<std::filesystem::path> prune_checkpoints(const std::filesystem::path& run_dir,
                                                     int keep) {
  std::vector<std::filesystem::path> removed;
  auto files = list_checkpoints(run_dir);
  auto excess = static_cast<int64_t>(files.size()) - std::max(keep, 1);
  for (int64_t i = 0; i < excess; ++i) {
    std::error_code ec;
    if (std::filesystem::remove(files[static_cast<size_t>(i)].path, ec))
      removed.push_back(files[static_cast<size_t>(i)].path);
  }
  return removed;
}

std::map<std::string, std::vector<std::byte>> shared_state_tensors(
  const std::filesystem::path& file) {
  std::map<std::string, std::vector<std::byte>> out;
  for (auto& t : read_safetensors_file(file).tensors)
    if (t.name.starts_with("model.") || t.name.starts_with("optimizer."))
      out[t.name] = std::move(t.data);
  return out;
}

} // namespace ddactor
