// Deterministic shuffles: Fisher-Yates over SplitMix64 with a rejection-sampled bounded draw.
#include "runtime/data_order.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>

namespace ddactor {

namespace {

// Each use of a seed gets its own tag so that, for example, the held-out split is not the
// prefix of epoch 0's permutation.
constexpr uint64_t epoch_stream_tag = 0x65706f6368000001ULL;    // "epoch"
constexpr uint64_t holdout_stream_tag = 0x686f6c646f757402ULL;  // "holdout"

uint64_t derive_state(uint64_t seed, uint64_t tag, uint64_t value) {
  return splitmix64::mix(splitmix64::mix(seed ^ tag) + value);
}

void check_size(int64_t n) {
  if (n < 0) throw data_order_error("data order of a negative size " + std::to_string(n));
}

std::vector<int64_t> identity(int64_t n) {
  std::vector<int64_t> p(static_cast<size_t>(n));
  std::iota(p.begin(), p.end(), int64_t{0});
  return p;
}

} // namespace

uint64_t splitmix64::bounded(uint64_t range) {
  // 2^64 mod range, computed in 64 bits: (2^64 - range) mod range.
  const uint64_t threshold = (0 - range) % range;
  for (;;) {
    const uint64_t x = next();
    if (x >= threshold) return x % range;
  }
}

std::vector<int64_t> epoch_permutation(int64_t n, uint64_t seed, int64_t epoch) {
  check_size(n);
  std::vector<int64_t> p = identity(n);
  splitmix64 rng(derive_state(seed, epoch_stream_tag, static_cast<uint64_t>(epoch)));
  for (int64_t i = n - 1; i > 0; --i) {
    const auto j = static_cast<int64_t>(rng.bounded(static_cast<uint64_t>(i) + 1));
    std::swap(p[static_cast<size_t>(i)], p[static_cast<size_t>(j)]);
  }
  return p;
}

shuffled_order::shuffled_order(int64_t n, uint64_t seed) : n_(n), seed_(seed) {
  if (n <= 0) throw data_order_error("shuffled order over an empty data set (n = " +
                                     std::to_string(n) + ")");
}

const std::vector<int64_t>& shuffled_order::permutation_of(int64_t epoch) {
  if (epoch != cached_epoch_) {
    cached_ = epoch_permutation(n_, seed_, epoch);
    cached_epoch_ = epoch;
  }
  return cached_;
}

std::vector<int64_t> shuffled_order::next_batch(data_cursor& cursor, int64_t batch_size) {
  if (batch_size <= 0)
    throw data_order_error("batch size must be positive, got " + std::to_string(batch_size));
  if (cursor.epoch < 0 || cursor.position < 0 || cursor.position >= n_)
    throw data_order_error("data cursor (epoch " + std::to_string(cursor.epoch) + ", position " +
                           std::to_string(cursor.position) + ") is outside a data set of " +
                           std::to_string(n_));
  std::vector<int64_t> batch;
  batch.reserve(static_cast<size_t>(batch_size));
  while (static_cast<int64_t>(batch.size()) < batch_size) {
    const auto& p = permutation_of(cursor.epoch);
    const int64_t take = std::min(batch_size - static_cast<int64_t>(batch.size()),
                                  n_ - cursor.position);
    batch.insert(batch.end(), p.begin() + cursor.position, p.begin() + cursor.position + take);
    cursor.position += take;
    if (cursor.position == n_) {
      ++cursor.epoch;
      cursor.position = 0;
    }
  }
  return batch;
}

std::vector<int64_t> holdout_split(int64_t n, double fraction, uint64_t seed,
                                   bool take_holdout) {
  check_size(n);
  if (!(fraction >= 0.0 && fraction <= 1.0))
    throw data_order_error("held-out fraction must be in [0, 1], got " + std::to_string(fraction));
  const auto k = std::clamp<int64_t>(std::llround(static_cast<double>(n) * fraction), 0, n);
  // A partial Fisher-Yates: the first k slots end up a uniform random k-subset.
  std::vector<int64_t> p = identity(n);
  splitmix64 rng(derive_state(seed, holdout_stream_tag, 0));
  for (int64_t i = 0; i < k; ++i) {
    const auto j = i + static_cast<int64_t>(rng.bounded(static_cast<uint64_t>(n - i)));
    std::swap(p[static_cast<size_t>(i)], p[static_cast<size_t>(j)]);
  }
  if (take_holdout)
    p.resize(static_cast<size_t>(k));
  else
    p.erase(p.begin(), p.begin() + k);
  std::sort(p.begin(), p.end());
  return p;
}

} // namespace ddactor
