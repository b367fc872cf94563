// part_reducer: validation of incoming chunks, per-sender storage, and the order-fixed weighted
// average (see the header for why the arithmetic waits until finish()).
#include "runtime/allreduce/weighted_reduction.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <iterator>

#include "runtime/finite_values.hpp"

namespace ddactor {

std::string_view to_string(accept_status status) noexcept {
  switch (status) {
    case accept_status::accepted: return "accepted";
    case accept_status::unknown_sender: return "unknown sender index";
    case accept_status::empty_chunk: return "empty chunk";
    case accept_status::outside_part: return "chunk runs past the end of the part";
    case accept_status::bad_weight: return "weight is not finite and > 0";
    case accept_status::weight_changed: return "weight differs from the sender's earlier chunks";
    case accept_status::duplicate_chunk: return "chunk overlaps values the sender already delivered";
    case accept_status::non_finite_value: return "chunk holds a NaN or an infinity";
  }
  return "unknown accept_status";
}

part_reducer::part_reducer(std::size_t part_length, std::size_t expected_senders,
                           aggregation_settings aggregation)
    : part_length_(part_length), aggregation_(aggregation), senders_(expected_senders) {
  if (expected_senders == 0)
    throw reduction_error("part_reducer: a part needs at least one expected sender");
  // Every sender has trivially delivered an empty part.
  if (part_length_ == 0)
    complete_senders_ = expected_senders;
}

bool part_reducer::overlaps_received(const sender_state& sender, std::size_t begin,
                                     std::size_t end) const {
  // The first run starting after `begin`, and the one before it, are the only candidates.
  auto next = sender.received.upper_bound(begin);
  if (next != sender.received.end() && next->first < end)
    return true;
  if (next != sender.received.begin() && std::prev(next)->second > begin)
    return true;
  return false;
}

void part_reducer::record_received(sender_state& sender, std::size_t begin, std::size_t end) {
  // Merging with touching neighbours keeps the map at one entry for chunks sent in order.
  auto next = sender.received.lower_bound(end);
  if (next != sender.received.end() && next->first == end) {
    end = next->second;
    next = sender.received.erase(next);
  }
  if (next != sender.received.begin()) {
    auto previous = std::prev(next);
    if (previous->second == begin) {
      previous->second = end;
      return;
    }
  }
  sender.received.emplace(begin, end);
}

accept_status part_reducer::check(std::size_t sender_index, std::size_t chunk_offset,
                                  std::span<const float> values, double weight) const {
  if (sender_index >= senders_.size())
    return accept_status::unknown_sender;
  if (values.empty())
    return accept_status::empty_chunk;
  // Written so that a huge offset cannot wrap around.
  if (chunk_offset > part_length_ || values.size() > part_length_ - chunk_offset)
    return accept_status::outside_part;
  if (!std::isfinite(weight) || !(weight > 0.0))
    return accept_status::bad_weight;
  const sender_state& sender = senders_[sender_index];
  if (sender.delivered > 0 && weight != sender.weight)
    return accept_status::weight_changed;
  if (overlaps_received(sender, chunk_offset, chunk_offset + values.size()))
    return accept_status::duplicate_chunk;
  if (!all_finite(values))
    return accept_status::non_finite_value;
  return accept_status::accepted;
}

accept_status part_reducer::accept(std::size_t sender_index, std::size_t chunk_offset,
                                   std::span<const float> values, double weight) {
  const accept_status status = check(sender_index, chunk_offset, values, weight);
  if (status != accept_status::accepted)
    return status;
  auto copy = std::make_shared<const std::vector<float>>(values.begin(), values.end());
  const std::span<const float> view(*copy);
  return accept_shared(sender_index, chunk_offset, std::move(copy), view, weight);
}

accept_status part_reducer::accept_shared(std::size_t sender_index, std::size_t chunk_offset,
                                          std::shared_ptr<const void> owner,
                                          std::span<const float> values, double weight) {
  const accept_status status = check(sender_index, chunk_offset, values, weight);
  if (status != accept_status::accepted)
    return status;
  sender_state& sender = senders_[sender_index];
  sender.chunks.emplace(chunk_offset, stored_chunk{std::move(owner), values});
  record_received(sender, chunk_offset, chunk_offset + values.size());
  sender.weight = weight;
  sender.delivered += values.size();
  if (sender.delivered == part_length_)
    ++complete_senders_;
  return accept_status::accepted;
}

template <class Segment>
void part_reducer::for_each_segment(const std::vector<std::size_t>& senders, std::size_t begin,
                                    std::size_t end, Segment&& f) const {
  std::vector<const float*> at(senders.size());
  for (std::size_t position = begin; position < end;) {
    std::size_t segment_end = end;
    for (std::size_t k = 0; k < senders.size(); ++k) {
      const auto& chunks = senders_[senders[k]].chunks;
      // The chunk that starts at or before `position`; complete ranges have one.
      auto chunk = std::prev(chunks.upper_bound(position));
      at[k] = chunk->second.values.data() + (position - chunk->first);
      segment_end = std::min(segment_end, chunk->first + chunk->second.values.size());
    }
    f(position, segment_end, at);
    position = segment_end;
  }
}

void part_reducer::accept_or_throw(std::size_t sender_index, std::size_t chunk_offset,
                                   std::span<const float> values, double weight) {
  const accept_status status = accept(sender_index, chunk_offset, values, weight);
  if (status != accept_status::accepted)
    throw reduction_error("part_reducer: rejected chunk from sender " +
                          std::to_string(sender_index) + " at offset " +
                          std::to_string(chunk_offset) + " with " +
                          std::to_string(values.size()) + " values and weight " +
                          std::to_string(weight) + " (part of " + std::to_string(part_length_) +
                          " elements, " + std::to_string(senders_.size()) +
                          " senders): " + std::string(to_string(status)));
}

bool part_reducer::complete() const noexcept {
  return complete_senders_ == senders_.size();
}

bool part_reducer::sender_complete(std::size_t sender_index) const {
  return delivered_elements(sender_index) == part_length_;
}

std::size_t part_reducer::delivered_elements(std::size_t sender_index) const {
  if (sender_index >= senders_.size())
    throw reduction_error("part_reducer: sender index " + std::to_string(sender_index) +
                          " out of range (" + std::to_string(senders_.size()) + " senders)");
  return senders_[sender_index].delivered;
}

reduction_result part_reducer::finish() const {
  reduction_result result;
  for (std::size_t j = 0; j < senders_.size(); ++j)
    if (senders_[j].delivered == part_length_)
      result.included_senders.push_back(j);
  if (result.included_senders.empty() || part_length_ == 0)
    return result;
  for (std::size_t j : result.included_senders)
    result.total_weight += senders_[j].weight;
  result.values = aggregation_.rule == aggregation_settings::kind::centered_clip
                    ? clipped(result.included_senders, 0, part_length_)
                    : weighted_mean(result.included_senders, 0, part_length_);
  return result;
}

bool part_reducer::range_complete(std::size_t begin, std::size_t end) const {
  if (begin >= end || end > part_length_)
    return false;
  for (const auto& sender : senders_) {
    // The run that starts at or before `begin` must reach `end` (adjacent runs are merged).
    auto run = sender.received.upper_bound(begin);
    if (run == sender.received.begin())
      return false;
    --run;
    if (run->second < end)
      return false;
  }
  return true;
}

std::vector<float> part_reducer::average_of_range(std::size_t begin, std::size_t end) const {
  if (!range_complete(begin, end))
    throw reduction_error("part_reducer: range [" + std::to_string(begin) + ", " +
                          std::to_string(end) + ") is not complete");
  // finish()'s arithmetic on a range, every sender included.
  std::vector<std::size_t> everyone(senders_.size());
  for (std::size_t j = 0; j < everyone.size(); ++j)
    everyone[j] = j;
  return aggregation_.rule == aggregation_settings::kind::centered_clip
           ? clipped(everyone, begin, end)
           : weighted_mean(everyone, begin, end);
}

std::vector<float> part_reducer::weighted_mean(const std::vector<std::size_t>& senders,
                                               std::size_t begin, std::size_t end) const {
  // Scale the weights by a power of two so that the largest is in [0.5, 1): exact, so the result is
  // the same as with the raw weights, but w_j * x_j cannot overflow whatever the sample counts.
  double largest = 0.0;
  for (std::size_t j : senders)
    largest = std::max(largest, senders_[j].weight);
  int exponent = 0;
  std::frexp(largest, &exponent);
  std::vector<double> scaled_weights;
  double scaled_total = 0.0;
  for (std::size_t j : senders) {
    scaled_weights.push_back(std::ldexp(senders_[j].weight, -exponent));
    scaled_total += scaled_weights.back();
  }
  // Fixed order: per element, senders in ascending index. The sums of a block of elements stay in
  // the cache while each sender's values stream through it.
  std::vector<float> values(end - begin);
  constexpr std::size_t block = 2048;
  std::array<double, block> sum;
  for_each_segment(
    senders, begin, end, [&](std::size_t from, std::size_t to, const std::vector<const float*>& x) {
      for (std::size_t at = from; at < to; at += block) {
        const std::size_t count = std::min(block, to - at);
        std::fill_n(sum.begin(), count, 0.0);
        for (std::size_t k = 0; k < x.size(); ++k) {
          const float* xk = x[k] + (at - from);
          for (std::size_t i = 0; i < count; ++i)
            sum[i] += scaled_weights[k] * static_cast<double>(xk[i]);
        }
        // A weighted average lies between the smallest and largest inputs, so the conversion
        // never overflows; a double quotient rounded to float is the correctly rounded float.
        float* out = values.data() + (at - begin);
        for (std::size_t i = 0; i < count; ++i)
          out[i] = static_cast<float>(sum[i] / scaled_total);
      }
    });
  return values;
}

std::vector<float> part_reducer::clipped(const std::vector<std::size_t>& senders,
                                         std::size_t begin, std::size_t end) const {
  // CenteredClip needs each sender's whole range in one piece (its norms span the range).
  std::vector<std::vector<float>> joined(senders.size());
  for_each_segment(senders, begin, end,
                   [&](std::size_t from, std::size_t to, const std::vector<const float*>& x) {
                     for (std::size_t k = 0; k < x.size(); ++k)
                       joined[k].insert(joined[k].end(), x[k], x[k] + (to - from));
                   });
  std::vector<std::span<const float>> inputs;
  std::vector<double> weights;
  for (std::size_t k = 0; k < senders.size(); ++k) {
    inputs.emplace_back(joined[k]);
    weights.push_back(senders_[senders[k]].weight);
  }
  return centered_clip(inputs, weights, aggregation_);
}

} // namespace ddactor
