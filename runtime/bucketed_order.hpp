#pragma once
// The order in which a peer visits a data set split into aspect-ratio buckets
// (runtime/aspect_buckets.hpp): every batch holds examples of one bucket, so that they share a
// size. Per epoch e:
//
//   1. each bucket's examples are shuffled (a permutation drawn from the seed, the bucket, e);
//   2. each bucket's sequence is cut into batches of batch_size (its last batch may be smaller);
//   3. the batches of all buckets are shuffled together (another permutation of the seed and e).
//
// Each epoch visits every example exactly once. The cursor (data_order.hpp's data_cursor) counts
// the examples of the epoch taken so far, so the order is a pure function of (seed, epoch,
// position) and a run resumes from a checkpoint's cursor. A position inside a batch (a cursor
// saved with another batch size) resumes at the next batch.
//
// Keeps the plan of the epoch it last used; not thread-safe.

#include <cstdint>
#include <vector>

#include "runtime/data_order.hpp"

namespace ddactor {

class bucketed_order {
 public:
  /// bucket_of[i] is the bucket of example i (any non-negative ids); batch_size > 0.
  bucketed_order(std::vector<int> bucket_of, int64_t batch_size, uint64_t seed);

  /// The next batch from `cursor`, which is advanced past it (to (epoch + 1, 0) at the end).
  std::vector<int64_t> next_batch(data_cursor& cursor);

  int64_t size() const { return static_cast<int64_t>(bucket_of_.size()); }

 private:
  struct epoch_plan {
    int64_t epoch = -1;
    std::vector<std::vector<int64_t>> batches;
    std::vector<int64_t> starts;  // the position at which each batch starts
  };
  const epoch_plan& plan_of(int64_t epoch);

  std::vector<int> bucket_of_;
  int64_t batch_size_;
  uint64_t seed_;
  epoch_plan plan_;
};

} // namespace ddactor
