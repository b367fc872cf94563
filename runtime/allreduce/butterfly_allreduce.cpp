// The butterfly round as a simulation: every message is built, (maybe) lost or corrupted, validated
// and consumed exactly as the averaging-group actor will do it, only within one process.
#include "runtime/allreduce/butterfly_allreduce.hpp"

#include "runtime/allreduce/weighted_reduction.hpp"
#include "runtime/tensor_blob.hpp"

#include <algorithm>
#include <cmath>
#include <random>
#include <span>
#include <string>

namespace ddactor {

namespace {

// A chunk in flight from one peer to a reducer.
struct chunk_message {
  std::size_t sender;
  tensor_blob blob;
};

void check_arguments(const std::vector<std::vector<float>>& inputs,
                     const std::vector<double>& weights, const allreduce_options& options,
                     const failure_plan& failures) {
  const std::size_t n = inputs.size();
  if (n == 0)
    throw allreduce_error("simulate_butterfly_allreduce: a group needs at least one peer");
  if (weights.size() != n)
    throw allreduce_error("simulate_butterfly_allreduce: " + std::to_string(weights.size()) +
                          " weights for " + std::to_string(n) + " peers");
  for (std::size_t j = 0; j < n; ++j) {
    if (inputs[j].size() != inputs[0].size())
      throw allreduce_error("simulate_butterfly_allreduce: peer " + std::to_string(j) + " has " +
                            std::to_string(inputs[j].size()) + " elements, peer 0 has " +
                            std::to_string(inputs[0].size()));
    if (!std::isfinite(weights[j]) || !(weights[j] > 0.0))
      throw allreduce_error("simulate_butterfly_allreduce: weight of peer " + std::to_string(j) +
                            " is " + std::to_string(weights[j]) + "; it must be finite and > 0 "
                            "(a peer with nothing to contribute does not join as a sender)");
  }
  if (!options.bandwidth_weights.empty() && options.bandwidth_weights.size() != n)
    throw allreduce_error("simulate_butterfly_allreduce: " +
                          std::to_string(options.bandwidth_weights.size()) +
                          " bandwidth weights for " + std::to_string(n) + " peers");
  if (options.chunk_elements == 0)
    throw allreduce_error("simulate_butterfly_allreduce: chunk_elements must be at least 1");
  auto check_peer = [n](std::size_t peer, const char* role) {
    if (peer >= n)
      throw allreduce_error(std::string("simulate_butterfly_allreduce: failure plan names ") +
                            role + " " + std::to_string(peer) + " in a group of " +
                            std::to_string(n));
  };
  for (const auto& t : failures.truncated) {
    check_peer(t.sender, "sender");
    if (t.reducer != failure_plan::every_reducer)
      check_peer(t.reducer, "reducer");
  }
  for (const auto& c : failures.corrupted) {
    check_peer(c.sender, "sender");
    check_peer(c.reducer, "reducer");
  }
  for (std::size_t r : failures.dead_reducers)
    check_peer(r, "dead reducer");
}

// How many of its chunks of part `reducer` the sender gets through: the tightest truncation.
std::size_t delivered_chunk_budget(const failure_plan& failures, std::size_t sender,
                                   std::size_t reducer) {
  std::size_t budget = std::numeric_limits<std::size_t>::max();
  for (const auto& t : failures.truncated)
    if (t.sender == sender && (t.reducer == reducer || t.reducer == failure_plan::every_reducer))
      budget = std::min(budget, t.chunks);
  return budget;
}

bool is_corrupted(const failure_plan& failures, std::size_t sender, std::size_t reducer,
                  std::size_t chunk) {
  return std::any_of(failures.corrupted.begin(), failures.corrupted.end(), [&](const auto& c) {
    return c.sender == sender && c.reducer == reducer && c.chunk == chunk;
  });
}

void count_transfer(std::vector<peer_traffic>& traffic, std::size_t from, std::size_t to,
                    std::size_t bytes) {
  traffic[from].bytes_sent += bytes;
  traffic[from].messages_sent += 1;
  traffic[to].bytes_received += bytes;
  traffic[to].messages_received += 1;
}

blob_expectations expectations_for(const allreduce_options& options, std::size_t part_index,
                                   const part_range& part) {
  blob_expectations expected;
  expected.round_id = options.round_id;
  expected.part_index = static_cast<std::uint32_t>(part_index);
  expected.dtype = static_cast<std::uint8_t>(blob_dtype::float32);
  expected.codec = blob_codec_none;
  expected.part_length = part.size();
  expected.max_rank = 1;
  // No chunk is longer than chunk_elements or than the part (which bounds the product below).
  expected.max_elements = std::max<std::uint64_t>(std::min(options.chunk_elements, part.size()), 1);
  expected.max_bytes = expected.max_elements * sizeof(float);
  return expected;
}

} // namespace

allreduce_result simulate_butterfly_allreduce(std::vector<std::vector<float>> inputs,
                                              std::vector<double> weights,
                                              const allreduce_options& options,
                                              const failure_plan& failures) {
  check_arguments(inputs, weights, options, failures);
  const std::size_t n = inputs.size();
  const std::size_t length = inputs[0].size();

  allreduce_result result;
  result.partition = options.bandwidth_weights.empty()
                         ? butterfly_partition(length, n, options.alignment)
                         : butterfly_partition(length, options.bandwidth_weights,
                                               options.alignment);
  result.traffic.resize(n);
  result.parts.resize(n);
  std::vector<bool> alive(n, true);
  for (std::size_t r : failures.dead_reducers)
    alive[r] = false;

  // ---- Phase 1: scatter-reduce. ------------------------------------------------------------
  // Reducers are independent of one another; on the network they run concurrently, here one after
  // the other, each with the messages the senders stream to it.
  std::vector<reduction_result> averages(n);
  for (std::size_t r = 0; r < n; ++r) {
    const part_range part = result.partition[r];
    const std::vector<part_range> chunks = chunk_ranges(part, options.chunk_elements);

    // Every sender s streams its slice x_s[P_r] to reducer r, chunk by chunk, unless it fails
    // part-way. Its own slice (s == r) takes the local path: no bytes on the wire.
    std::vector<chunk_message> in_flight;
    for (std::size_t s = 0; s < n; ++s) {
      const std::size_t sent = std::min(chunks.size(), delivered_chunk_budget(failures, s, r));
      for (std::size_t c = 0; c < sent; ++c) {
        const std::span<const float> slice(inputs[s].data() + chunks[c].begin, chunks[c].size());
        tensor_blob blob = make_float32_blob(options.round_id, static_cast<std::uint32_t>(r),
                                             chunks[c].begin - part.begin, slice);
        if (is_corrupted(failures, s, r, c))
          blob.bytes[(c * 7919) % blob.bytes.size()] ^= 0x10; // chunks are never empty
        if (s != r)
          count_transfer(result.traffic, s, r, blob.bytes.size());
        in_flight.push_back({s, std::move(blob)});
      }
    }
    // The network interleaves the senders' streams arbitrarily.
    if (options.delivery_seed != 0) {
      std::mt19937_64 rng(options.delivery_seed * 0x9e3779b97f4a7c15ULL + r);
      for (std::size_t i = in_flight.size(); i > 1; --i)
        std::swap(in_flight[i - 1], in_flight[rng() % i]);
    }

    // Reducer r checks every chunk before it touches the average; a refused chunk is as good as
    // lost, so its sender ends up incomplete and excluded.
    part_reducer reducer(part.size(), n);
    const blob_expectations expected = expectations_for(options, r, part);
    std::size_t rejected = 0;
    for (const chunk_message& message : in_flight) {
      if (validate_blob(message.blob, expected)) {
        ++rejected;
        continue;
      }
      const std::vector<float> values = float32_values(message.blob);
      if (reducer.accept(message.sender, message.blob.offset, values, weights[message.sender]) !=
          accept_status::accepted)
        ++rejected;
    }
    averages[r] = reducer.finish();

    part_status& status = result.parts[r];
    status.range = part;
    status.reducer = r;
    status.rejected_chunks = rejected;
    status.included_senders = averages[r].included_senders;
    for (std::size_t s = 0; s < n; ++s)
      if (!std::binary_search(status.included_senders.begin(), status.included_senders.end(), s))
        status.excluded_senders.push_back(s);
  }

  // Every peer starts phase 2 from its own values: a part it does not receive stays local.
  result.outputs.resize(n);
  for (std::size_t p = 0; p < n; ++p)
    if (alive[p])
      result.outputs[p] = std::move(inputs[p]);

  // ---- Phase 2: all-gather. ----------------------------------------------------------------
  for (std::size_t r = 0; r < n; ++r) {
    part_status& status = result.parts[r];
    const part_range part = result.partition[r];
    if (!alive[r]) {
      status.outcome = part_outcome::reducer_failed;
      continue;
    }
    if (!averages[r].has_average()) {
      // Reducer r tells the others to keep their own values (a notice, no payload).
      status.outcome = part_outcome::no_complete_sender;
      continue;
    }
    status.outcome = part_outcome::reduced;
    if (part.empty())
      continue;
    const std::vector<float>& average = averages[r].values;
    std::copy(average.begin(), average.end(),
              result.outputs[r]->begin() + static_cast<std::ptrdiff_t>(part.begin));

    // Reducer r streams avg(P_r) to every surviving peer; each validates and writes it in place.
    const blob_expectations expected = expectations_for(options, r, part);
    for (const part_range& chunk : chunk_ranges(part, options.chunk_elements)) {
      const std::span<const float> slice(average.data() + (chunk.begin - part.begin),
                                         chunk.size());
      const tensor_blob blob = make_float32_blob(
          options.round_id, static_cast<std::uint32_t>(r), chunk.begin - part.begin, slice);
      for (std::size_t p = 0; p < n; ++p) {
        if (p == r || !alive[p])
          continue;
        count_transfer(result.traffic, r, p, blob.bytes.size());
        if (validate_blob(blob, expected)) {
          ++status.rejected_chunks;
          continue;
        }
        const std::vector<float> values = float32_values(blob);
        std::copy(values.begin(), values.end(),
                  result.outputs[p]->begin() +
                      static_cast<std::ptrdiff_t>(part.begin + blob.offset));
      }
    }
  }
  return result;
}

} // namespace ddactor
