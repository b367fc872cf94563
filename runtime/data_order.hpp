#pragma once
// The order in which a peer visits its data set: one shuffle per epoch, a cursor that walks
// through it batch by batch, and held-out splits. All of it depends only on (n, seed, epoch)
// and gives the same indices on every machine, compiler and standard library, so a run can be
// resumed from (epoch, position) and two peers with the same seed see the same order.
// std::shuffle and std::uniform_int_distribution are implementation-defined, hence the
// generator and the bounded draw written here.

#include <cstdint>
#include <span>
#include <stdexcept>
#include <vector>

namespace ddactor {

// An argument no data order can be made from (a negative size, a fraction outside [0, 1]).
class data_order_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// SplitMix64 (Steele, Lea and Flood, "Fast splittable pseudorandom number generators", 2014;
// the constants of Vigna's reference splitmix64.c). 64 bits of state, passes BigCrush, and
// one call of `mix` is a good hash of a 64-bit value, which we use to derive seeds.
class splitmix64 {
 public:
  explicit splitmix64(uint64_t seed) : state_(seed) {}

  uint64_t next() {
    state_ += 0x9e3779b97f4a7c15ULL;
    return mix(state_);
  }

  // A uniform value in [0, range), range > 0, without modulo bias: draws below 2^64 mod range
  // are rejected (fewer than one draw in 2^32 for ranges below 2^32).
  uint64_t bounded(uint64_t range);

  static uint64_t mix(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }

 private:
  uint64_t state_;
};

// A permutation of 0..n-1 (Fisher-Yates) drawn from (seed, epoch). Different epochs give
// unrelated permutations.
std::vector<int64_t> epoch_permutation(int64_t n, uint64_t seed, int64_t epoch);

// Where a reader is in its data order: the epoch and how many indices of that epoch's
// permutation it has already taken. Saved in checkpoints to resume the same order.
struct data_cursor {
  int64_t epoch = 0;
  int64_t position = 0;  // in [0, n): a cursor at the end of an epoch moves to (epoch + 1, 0)

  friend bool operator==(const data_cursor&, const data_cursor&) = default;
};

// Batches of indices in the shuffled order of (n, seed). Every batch is full: a batch that
// reaches the end of an epoch goes on with the start of the next epoch's permutation, so
// each epoch still visits every index exactly once and no sample is dropped or repeated
// within an epoch. A batch larger than n spans several epochs.
//
// Keeps the permutation of the epoch it last used; not thread-safe.
class shuffled_order {
 public:
  shuffled_order(int64_t n, uint64_t seed);

  // The next batch_size (> 0) indices from `cursor`, which is advanced past them.
  std::vector<int64_t> next_batch(data_cursor& cursor, int64_t batch_size);

  int64_t size() const { return n_; }

 private:
  const std::vector<int64_t>& permutation_of(int64_t epoch);

  int64_t n_;
  uint64_t seed_;
  int64_t cached_epoch_ = -1;
  std::vector<int64_t> cached_;
};

// A held-out split of 0..n-1: llround(n * fraction) indices chosen at random from seed (with a
// stream of its own, unrelated to epoch_permutation's), returned in increasing order when
// take_holdout is true; the other indices, also in increasing order, when it is false. The two
// calls partition 0..n-1.
std::vector<int64_t> holdout_split(int64_t n, double fraction, uint64_t seed, bool take_holdout);

} // namespace ddactor
