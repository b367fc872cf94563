// Batches of one bucket each; see bucketed_order.hpp.
#include "runtime/bucketed_order.hpp"

#include <algorithm>
#include <map>
#include <string>

namespace ddactor {

namespace {

// Streams of their own for each bucket's shuffle and for the batch order.
constexpr uint64_t bucket_stream = 0x6275636b65747331ULL;  // "buckets1"
constexpr uint64_t batch_stream = 0x6261746368657331ULL;   // "batches1"

} // namespace

bucketed_order::bucketed_order(std::vector<int> bucket_of, int64_t batch_size, uint64_t seed)
  : bucket_of_(std::move(bucket_of)), batch_size_(batch_size), seed_(seed) {
  if (batch_size_ < 1)
    throw data_order_error("bucketed order needs batch_size > 0, got " +
                           std::to_string(batch_size_));
  if (bucket_of_.empty())
    throw data_order_error("bucketed order needs at least one example");
  if (std::any_of(bucket_of_.begin(), bucket_of_.end(), [](int b) { return b < 0; }))
    throw data_order_error("bucket ids must not be negative");
}

const bucketed_order::epoch_plan& bucketed_order::plan_of(int64_t epoch) {
  if (plan_.epoch == epoch)
    return plan_;
  std::map<int, std::vector<int64_t>> members;
  for (size_t i = 0; i < bucket_of_.size(); ++i)
    members[bucket_of_[i]].push_back(static_cast<int64_t>(i));
  std::vector<std::vector<int64_t>> batches;
  for (const auto& [bucket, indices] : members) {
    const uint64_t seed =
      splitmix64::mix(seed_ ^ bucket_stream ^ splitmix64::mix(static_cast<uint64_t>(bucket)));
    const auto order = epoch_permutation(static_cast<int64_t>(indices.size()), seed, epoch);
    for (size_t start = 0; start < order.size(); start += static_cast<size_t>(batch_size_)) {
      std::vector<int64_t> batch;
      for (size_t k = start; k < std::min(order.size(), start + static_cast<size_t>(batch_size_));
           ++k)
        batch.push_back(indices[static_cast<size_t>(order[k])]);
      batches.push_back(std::move(batch));
    }
  }
  const auto batch_order = epoch_permutation(static_cast<int64_t>(batches.size()),
                                             splitmix64::mix(seed_ ^ batch_stream), epoch);
  plan_ = {};
  plan_.epoch = epoch;
  int64_t position = 0;
  for (const auto b : batch_order) {
    plan_.starts.push_back(position);
    position += static_cast<int64_t>(batches[static_cast<size_t>(b)].size());
    plan_.batches.push_back(std::move(batches[static_cast<size_t>(b)]));
  }
  return plan_;
}

std::vector<int64_t> bucketed_order::next_batch(data_cursor& cursor) {
  if (cursor.epoch < 0 || cursor.position < 0)
    throw data_order_error("bucketed order: negative cursor");
  const auto* plan = &plan_of(cursor.epoch);
  auto at = std::lower_bound(plan->starts.begin(), plan->starts.end(), cursor.position);
  if (at == plan->starts.end()) {
    cursor = {cursor.epoch + 1, 0};
    plan = &plan_of(cursor.epoch);
    at = plan->starts.begin();
  }
  const auto index = static_cast<size_t>(at - plan->starts.begin());
  auto batch = plan->batches[index];
  cursor.position = plan->starts[index] + static_cast<int64_t>(batch.size());
  if (cursor.position >= size())
    cursor = {cursor.epoch + 1, 0};
  return batch;
}

} // namespace ddactor
