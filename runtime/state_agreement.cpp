// The agreed shared state of an epoch; see state_agreement.hpp.
#include "runtime/state_agreement.hpp"

#include <algorithm>
#include <map>

#include "runtime/tensor_blob.hpp"

namespace ddactor {

std::optional<state_agreement> state_to_take(std::span<const state_digest_report> reports,
                                             uint64_t mine, std::size_t group_size) {
  if (reports.size() > group_size)
    return std::nullopt;
  auto agreed = agreed_state(reports);
  if (!agreed || agreed->digest == mine)
    return std::nullopt;
  return agreed;
}

std::optional<state_agreement> agreed_state(std::span<const state_digest_report> reports) {
  std::map<uint64_t, state_agreement> by_digest;
  for (const auto& r : reports)
    if (r.digest != 0)
      by_digest[r.digest].holders.push_back(r.peer_id);
  if (by_digest.empty())
    return std::nullopt;
  const state_agreement* best = nullptr;
  for (auto& [digest, agreement] : by_digest) {
    agreement.digest = digest;
    std::sort(agreement.holders.begin(), agreement.holders.end());
    if (best == nullptr || agreement.holders.size() > best->holders.size() ||
        (agreement.holders.size() == best->holders.size() &&
         agreement.holders.front() < best->holders.front()))
      best = &agreement;
  }
  return *best;
}

bool split_repair_possible(std::string_view state_compression, int64_t state_every) noexcept {
  return (state_compression == "none" || state_compression == "zstd") && state_every == 1;
}

bool digest_history::record(int64_t epoch, uint64_t digest) {
  if (digest == 0)
    return false;
  bool started_over = false;
  if (!by_epoch_.empty()) {
    const auto [last_epoch, last_digest] = *by_epoch_.rbegin();
    if (epoch == last_epoch && digest == last_digest)
      return false;
    if (epoch != last_epoch + 1) {
      by_epoch_.clear();
      started_over = true;
    }
  }
  by_epoch_[epoch] = digest;
  while (by_epoch_.size() > max_epochs)
    by_epoch_.erase(by_epoch_.begin());
  return started_over;
}

std::optional<uint64_t> digest_history::at(int64_t epoch) const {
  auto it = by_epoch_.find(epoch);
  if (it == by_epoch_.end())
    return std::nullopt;
  return it->second;
}

uint64_t state_digest_of(std::span<const float> weights) noexcept {
  auto digest = blob_checksum(
    {reinterpret_cast<const char*>(weights.data()), weights.size_bytes()}, 0x5eed'57a7e);
  return digest == 0 ? 1 : digest;
}

} // namespace ddactor
