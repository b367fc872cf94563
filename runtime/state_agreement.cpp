// The agreed shared state of an epoch; see state_agreement.hpp.
#include "runtime/state_agreement.hpp"

#include <algorithm>
#include <map>

#include <sodium.h>

#include <array>
#include <atomic>
#include <cstring>
#include <system_error>
#include <thread>
#include <vector>

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

namespace {

constexpr std::size_t digest_piece_bytes = std::size_t{4} << 20;
constexpr std::size_t digest_threads_from_bytes = std::size_t{64} << 20;
using piece_hash = std::array<unsigned char, crypto_generichash_BYTES>;

} // namespace

// BLAKE2b over 4 MiB pieces, then over the pieces' hashes: a tree, so that large models hash on
// several cores (SD 1.5's 3.4 GB would take seconds on one). Cryptographic, because peers vouch
// for a state by its digest: with a checksum, a hostile peer could shape forged weights to the
// digest honest peers report.
uint64_t state_digest_of(std::span<const float> weights) noexcept {
  [[maybe_unused]] const int sodium = sodium_init();  // idempotent; hashing works either way
  const auto* bytes = reinterpret_cast<const unsigned char*>(weights.data());
  const std::size_t size = weights.size_bytes();
  const std::size_t pieces =
    std::max<std::size_t>(1, (size + digest_piece_bytes - 1) / digest_piece_bytes);
  std::vector<piece_hash> hashes(pieces);
  std::atomic<std::size_t> next{0};
  auto hash_pieces = [&] {
    for (std::size_t p = next++; p < pieces; p = next++) {
      const std::size_t begin = std::min(size, p * digest_piece_bytes);
      const std::size_t length = std::min(digest_piece_bytes, size - begin);
      crypto_generichash(hashes[p].data(), hashes[p].size(), bytes + begin, length, nullptr, 0);
    }
  };
  std::vector<std::thread> helpers;
  if (size >= digest_threads_from_bytes) {
    const auto cores = std::clamp<std::size_t>(std::thread::hardware_concurrency(), 1, 8);
    try {
      for (std::size_t t = 1; t < cores; ++t)
        helpers.emplace_back(hash_pieces);
    } catch (const std::system_error&) {
      // Fewer helpers: the pieces are shared among those that started.
    }
  }
  hash_pieces();
  for (auto& helper : helpers)
    helper.join();
  static constexpr char domain[] = "ddactor state digest v2";
  const uint64_t length = size;
  crypto_generichash_state root;
  crypto_generichash_init(&root, nullptr, 0, crypto_generichash_BYTES_MIN);
  crypto_generichash_update(&root, reinterpret_cast<const unsigned char*>(domain), sizeof domain);
  crypto_generichash_update(&root, reinterpret_cast<const unsigned char*>(&length), sizeof length);
  for (const auto& h : hashes)
    crypto_generichash_update(&root, h.data(), h.size());
  std::array<unsigned char, crypto_generichash_BYTES_MIN> out{};
  crypto_generichash_final(&root, out.data(), out.size());
  uint64_t digest = 0;
  std::memcpy(&digest, out.data(), sizeof digest);
  return digest == 0 ? 1 : digest;
}

} // namespace ddactor
