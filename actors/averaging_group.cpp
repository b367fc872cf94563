// One peer's side of a butterfly all-reduce; see averaging_group.hpp for the protocol and its
// failure semantics.
#include "actors/averaging_group.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <csignal>
#include <cstring>
#include <limits>
#include <map>
#include <optional>
#include <stdexcept>
#include <thread>

#include "monitoring/ddactor_metrics.hpp"
#include "runtime/allreduce/bandwidth_shares.hpp"
#include "runtime/allreduce/butterfly_partition.hpp"
#include "runtime/allreduce/link_rate_estimate.hpp"
#include "runtime/allreduce/chunk_coding.hpp"
#include "runtime/allreduce/weighted_reduction.hpp"
#include "runtime/compression/codec_factory.hpp"
#include "runtime/actor_ticks.hpp"

namespace ddactor {

namespace {

using clock_type = std::chrono::steady_clock;

// How long a finished member waits for the others' digests before it leaves.
constexpr auto digest_wait = std::chrono::seconds(5);
// Chunks that arrive before this member's own assignment are kept, up to this many.
constexpr size_t max_early_chunks = 4096;
// Rates above this (bytes per second: 1 Tbit/s) are no measurement.
constexpr double max_plausible_rate = 125e9;
// At most one liveness note per member to membership in this interval.
constexpr auto alive_note_interval = std::chrono::milliseconds(200);

// A chunk at a compressor: what to do with the result.
struct pending_chunk {
  enum class role : uint8_t {
    scatter_out,  // our values for another member's part: send the blob
    own_part,     // our values for our own part: into the reducer as the others will read them
    gather_out,   // our part's result: apply locally and send to everyone
    scatter_in,   // a member's values for our part: into the reducer
    gather_in,    // a member's result for its part: apply
  };
  role what = role::scatter_out;
  uint64_t attempt = 0;
  size_t compressor = 0;
  uint32_t member = 0;     // out: the receiver; in: the sender
  uint32_t position = 0;   // the part's position in this attempt
  uint64_t offset = 0;     // within the part
  size_t piece_begin = 0;  // within the whole vector
  size_t elements = 0;
};

// The chunks one member sent us: how many bytes, first and last arrival.
struct received_stream {
  uint64_t bytes = 0;
  clock_type::time_point first;
  clock_type::time_point last;

  double seconds() const { return std::chrono::duration<double>(last - first).count(); }
  // Bytes per second, or 0 when the chunks were too few or too close to measure.
  double rate() const {
    return bytes >= link_rate_estimate::min_sample_bytes && seconds() > 0 ? bytes / seconds() : 0;
  }
};

struct group_state {
  averaging_group_options options;
  group_assignment assignment;
  bool assigned = false;
  uint32_t me = 0;
  uint64_t member_set = 0;
  // The attempt in progress: members (indices into assignment.members) and their parts.
  std::vector<uint32_t> active;
  std::vector<part_range> parts;
  uint32_t my_position = 0;
  std::unique_ptr<part_reducer> reducer;
  // The pieces of our part (chunks, split at tensors), and which are reduced and sent.
  std::vector<part_range> my_pieces;
  std::vector<bool> piece_reduced;
  size_t pieces_reduced = 0;
  std::vector<float> output;
  std::vector<size_t> part_received;  // elements of each part's result received
  size_t parts_done = 0;
  bool done = false;
  // The round's deadline, then (once done) how long digests are awaited; checked on ticks
  // (runtime/actor_ticks.hpp), so a group that quit is not held by a timer.
  clock_type::time_point deadline;
  clock_type::time_point digest_deadline;
  uint64_t digest = 0;
  uint64_t digests_expected = 0;      // member set whose digests we wait for
  // Statistics for the outcome and metrics.
  clock_type::time_point started = clock_type::now();
  uint64_t bytes_sent = 0;
  uint64_t bytes_received = 0;
  uint64_t float_bytes = 0;  // what the same chunks would have taken as float32
  int32_t restarts = 0;
  std::vector<allreduce_chunk> early_chunks;
  std::vector<clock_type::time_point> last_alive_note;  // per member
  // Members whose actor ended while some of their chunks were still being decoded.
  uint64_t departed = 0;
  // What arrived from each member, for the link-rate measurement (link_rate_estimate.hpp).
  std::vector<received_stream> received;
  // The other members' view of our upload, from their digests.
  uint64_t upload_bytes = 0;
  double upload_rate = 0;
  bool rates_reported = false;
  // Chunks out at the compressors, by tag; a result whose attempt is over is dropped.
  uint64_t attempt = 0;
  uint64_t next_tag = 0;
  std::map<uint64_t, pending_chunk> pending;
  std::vector<size_t> compressor_load;  // jobs out per compressor
  // Top-k: the error feedback as the round found it; every attempt starts from it, and a round
  // that fails puts it back (its values were never applied anywhere).
  std::vector<float> residual_at_start;
  size_t scatter_chunks = 0;       // chunks this attempt sends to other members
  size_t scatter_chunks_sent = 0;
  averaging_metrics metrics{global_metrics()};
  static inline const char* name = "averaging_group";
};

using group_pointer = caf::stateful_actor<group_state>*;

std::string short_id(const std::string& id) {
  return id.substr(0, 8);
}

bool in_set(uint64_t set, uint32_t member) {
  return (set >> member) & 1u;
}

void handle_chunk(group_pointer self, allreduce_chunk& chunk);

// Splits a range of the vector where tensors begin or end (adaptive codec only), so that each
// piece belongs to one tensor.
std::vector<part_range> split_at_tensors(const group_state& st, part_range range) {
  std::vector<part_range> out;
  const auto* bounds = st.options.tensor_bounds.get();
  if (st.options.codec != "adaptive" || bounds == nullptr) {
    out.push_back(range);
    return out;
  }
  auto begin = range.begin;
  auto it = std::upper_bound(bounds->begin(), bounds->end(), static_cast<uint64_t>(begin));
  for (; it != bounds->end() && *it < range.end; ++it) {
    out.push_back({begin, static_cast<size_t>(*it)});
    begin = static_cast<size_t>(*it);
  }
  out.push_back({begin, range.end});
  return out;
}

// Whether the adaptive codec sends this piece (inside one tensor) exactly.
bool small_tensor(const group_state& st, part_range piece) {
  const auto& bounds = *st.options.tensor_bounds;
  auto it = std::upper_bound(bounds.begin(), bounds.end(), static_cast<uint64_t>(piece.begin));
  if (it == bounds.begin() || it == bounds.end())
    return true;
  return *it - *(it - 1) < st.options.codec_settings.adaptive_exact_below;
}

// The codec for one piece of one phase. Top-k's error feedback lives in options.residual; in the
// gather phase top-k keeps up to `senders` times as many entries, enough for every entry the
// senders kept, so the result of the reduction is sent without loss.
chunk_codec codec_for(const group_state& st, part_range piece, size_t senders,
                      allreduce_phase phase) {
  const auto& name = st.options.codec;
  chunk_codec out{name, st.options.codec_settings};
  if (name == "adaptive")
    out.name = st.options.tensor_bounds && small_tensor(st, piece) ? "none" : "int8";
  if (name == "topk" && phase == allreduce_phase::gather) {
    auto kept = static_cast<double>(std::max<long long>(
      1, std::llround(out.settings.topk_fraction * static_cast<double>(piece.size()))));
    out.settings.topk_fraction = std::min(
      1.0, (static_cast<double>(senders) * kept + 0.5) / static_cast<double>(piece.size()));
  }
  return out;
}

void send_chunk(group_pointer self, uint32_t member, allreduce_chunk chunk) {
  auto& st = self->state;
  st.bytes_sent += chunk.blob.bytes.size();
  st.metrics.bytes_sent.inc(chunk.blob.bytes.size());
  self->send(st.assignment.members[member].averager, chunk_atom_v, std::move(chunk));
}

void reply_and_finish(group_pointer self, average_outcome outcome) {
  auto& st = self->state;
  outcome.round_id = st.assignment.round_id;
  outcome.seconds = std::chrono::duration<double>(clock_type::now() - st.started).count();
  outcome.bytes_sent = st.bytes_sent;
  outcome.bytes_received = st.bytes_received;
  outcome.restarts = st.restarts;
  self->send(st.options.reply_to, std::move(outcome));
}

void fail(group_pointer self, errc code, const std::string& why) {
  auto& st = self->state;
  if (st.done)
    return;
  st.done = true;
  if (!st.residual_at_start.empty())
    *st.options.residual = st.residual_at_start;
  spdlog::warn("round {:016x}: {} ({})", st.assignment.round_id, why, to_string(code));
  st.metrics.round_failures.with({code == errc::round_timeout ? "deadline" : "invalid_assignment"})
    .inc();
  average_outcome outcome;
  outcome.values = st.options.values;
  outcome.result = round_result::failed;
  outcome.detail = why;
  reply_and_finish(self, std::move(outcome));
  self->quit();
}

// A finished round tells the averager what it measured of this peer's link (a download sample:
// everything that arrived, first chunk to last; an upload sample: the members' digests), then
// ends.
void quit_reporting_link_rates(group_pointer self) {
  auto& st = self->state;
  if (!st.rates_reported && st.options.reply_to) {
    st.rates_reported = true;
    uint64_t bytes = 0;
    std::optional<clock_type::time_point> first, last;
    for (const auto& stream : st.received)
      if (stream.bytes > 0) {
        bytes += stream.bytes;
        first = first ? std::min(*first, stream.first) : stream.first;
        last = last ? std::max(*last, stream.last) : stream.last;
      }
    const double seconds = first ? std::chrono::duration<double>(*last - *first).count() : 0.0;
    self->send(st.options.reply_to, link_rate_atom_v, static_cast<double>(bytes), seconds,
               static_cast<double>(st.upload_bytes), st.upload_rate);
  }
  self->quit();
}

// Every member has finished: compare digests, then leave.
void maybe_quit_after_digests(group_pointer self) {
  auto& st = self->state;
  if (st.done && st.digests_expected == 0)
    quit_reporting_link_rates(self);
}

void finish_round(group_pointer self) {
  auto& st = self->state;
  st.done = true;
  st.digest = blob_checksum(std::span<const char>(reinterpret_cast<const char*>(st.output.data()),
                                                  st.output.size() * sizeof(float)));
  for (auto member : st.active)
    if (member != st.me) {
      const auto& from = st.received[member];
      self->send(st.assignment.members[member].averager, digest_atom_v,
                 round_digest{st.assignment.round_id, st.member_set, st.me, st.digest, from.bytes,
                              from.rate()});
    }
  average_outcome outcome;
  outcome.values = std::make_shared<const std::vector<float>>(std::move(st.output));
  outcome.group_size = static_cast<int32_t>(st.active.size());
  outcome.result = st.active.size() > 1 ? round_result::averaged : round_result::alone;
  if (st.float_bytes > 0)
    st.metrics.compression_ratio.set(static_cast<double>(st.bytes_sent) /
                                     static_cast<double>(st.float_bytes));
  reply_and_finish(self, std::move(outcome));
  // Wait for the others' digests (bounded), so a mismatch is noticed and counted.
  st.digests_expected = st.member_set & ~(uint64_t{1} << st.me);
  if (st.active.size() <= 1)
    st.digests_expected = 0;
  st.digest_deadline = clock_type::now() + digest_wait;
  maybe_quit_after_digests(self);
}

void check_all_parts_done(group_pointer self) {
  auto& st = self->state;
  if (!st.done && st.parts_done == st.parts.size())
    finish_round(self);
}

// Writes a part's result into the output.
void apply_result(group_pointer self, uint32_t position, uint64_t offset,
                  const std::vector<float>& values) {
  auto& st = self->state;
  const auto& part = st.parts[position];
  std::copy(values.begin(), values.end(),
            st.output.begin() + static_cast<std::ptrdiff_t>(part.begin + offset));
  st.part_received[position] += values.size();
  if (st.part_received[position] == part.size())
    ++st.parts_done;
}

// Fault injection: give the network a moment to carry what was sent, then die like a crash.
[[noreturn]] void die_now(const char* role) {
  spdlog::warn("debug: killing this peer in the middle of an all-reduce (as {})", role);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  std::raise(SIGKILL);
  std::abort();
}

// Hands a job to the least busy compressor.
template <class Work>
void dispatch(group_pointer self, Work work, pending_chunk pending) {
  auto& st = self->state;
  pending.attempt = st.attempt;
  work.tag = st.next_tag++;
  const auto& compressors = st.options.compressors;
  auto least = std::min_element(st.compressor_load.begin(), st.compressor_load.end());
  pending.compressor = static_cast<size_t>(least - st.compressor_load.begin());
  ++*least;
  st.pending.emplace(work.tag, pending);
  self->send(compressors[pending.compressor], std::move(work));
}

// An encode job for `values` at `offset` in the part at `position` of this attempt.
chunk_encode_job encode_job(const group_state& st, uint32_t position, uint64_t offset,
                            std::span<const float> values) {
  chunk_encode_job job;
  job.round_id = st.assignment.round_id;
  job.part_index = position;
  job.offset = offset;
  job.part_length = st.parts[position].size();
  job.values.assign(values.begin(), values.end());
  return job;
}

// Every piece of this peer's part that all members have sent is reduced at once, encoded once,
// sent to everyone and the very same encoding applied locally (so every member ends with
// identical values even with lossy codecs). Pieces go out while others still arrive: a member
// on a slow link receives results while it still sends (the gather overlaps the scatter).
void reduce_ready_pieces(group_pointer self) {
  auto& st = self->state;
  if (!st.reducer)
    return;
  const auto& part = st.parts[st.my_position];
  for (size_t k = 0; k < st.my_pieces.size(); ++k) {
    const auto& piece = st.my_pieces[k];
    const auto offset = piece.begin - part.begin;
    if (st.piece_reduced[k] || !st.reducer->range_complete(offset, offset + piece.size()))
      continue;
    if (st.options.inject == averaging_group_options::fault::die_as_reducer)
      die_now("reducer");
    st.piece_reduced[k] = true;
    ++st.pieces_reduced;
    auto job = encode_job(st, st.my_position, offset,
                          st.reducer->average_of_range(offset, offset + piece.size()));
    job.codec = codec_for(st, piece, st.active.size(), allreduce_phase::gather);
    job.decode_back = true;
    pending_chunk pending;
    pending.what = pending_chunk::role::gather_out;
    pending.position = st.my_position;
    pending.offset = offset;
    pending.piece_begin = piece.begin;
    dispatch(self, compressor_encode{0, std::move(job)}, pending);
  }
  if (st.pieces_reduced == st.my_pieces.size())
    st.reducer.reset();
}

// (Re)starts the all-reduce among the members in st.member_set.
void start_attempt(group_pointer self) {
  auto& st = self->state;
  ++st.attempt;  // results of earlier attempts still at the compressors are dropped on arrival
  st.active.clear();
  for (uint32_t m = 0; m < st.assignment.members.size(); ++m)
    if (in_set(st.member_set, m))
      st.active.push_back(m);
  st.my_position = static_cast<uint32_t>(
    std::find(st.active.begin(), st.active.end(), st.me) - st.active.begin());
  const auto& values = *st.options.values;
  st.output.assign(values.begin(), values.end());
  std::vector<uint64_t> shares;
  for (auto member : st.active)
    shares.push_back(st.assignment.members[member].part_share);
  st.parts = partition_by_shares(values.size(), shares);
  st.part_received.assign(st.parts.size(), 0);
  st.parts_done = 0;
  for (const auto& part : st.parts)
    if (part.empty())
      ++st.parts_done;
  const auto& my_part = st.parts[st.my_position];
  st.reducer = my_part.empty()
                 ? nullptr
                 : std::make_unique<part_reducer>(my_part.size(), st.active.size());
  st.my_pieces.clear();
  for (const auto& chunk : chunk_ranges(my_part, st.options.chunk_elements))
    for (const auto& piece : split_at_tensors(st, chunk))
      st.my_pieces.push_back(piece);
  st.piece_reduced.assign(st.my_pieces.size(), false);
  st.pieces_reduced = 0;
  if (st.active.size() == 1) {
    // Everyone else failed: this peer's own values are the result.
    st.reducer.reset();
    st.parts_done = st.parts.size();
    check_all_parts_done(self);
    return;
  }
  // Scatter: part p of our vector to the member that reduces it, our own part into our reducer
  // as the others will read it. Every chunk goes to a compressor; each is sent as soon as it
  // comes back, while the others are still being coded.
  st.scatter_chunks = 0;
  st.scatter_chunks_sent = 0;
  const bool topk = !st.residual_at_start.empty();
  if (topk)
    *st.options.residual = st.residual_at_start;
  for (uint32_t p = 0; p < st.active.size(); ++p) {
    const auto& part = st.parts[p];
    for (const auto& chunk : chunk_ranges(part, st.options.chunk_elements)) {
      for (const auto& piece : split_at_tensors(st, chunk)) {
        const auto offset = piece.begin - part.begin;
        const bool own = p == st.my_position;
        auto job = encode_job(st, p, offset,
                              std::span<const float>(values).subspan(piece.begin, piece.size()));
        job.codec = codec_for(st, piece, st.active.size(), allreduce_phase::scatter);
        if (topk) {
          // Error feedback: what earlier rounds dropped rides along with this round's values.
          for (size_t i = 0; i < piece.size(); ++i)
            job.values[i] += st.residual_at_start[piece.begin + i];
          job.error_feedback = true;
        }
        if (st.options.corrupt_chunks && !own) {
          job.values.assign(piece.size(), std::numeric_limits<float>::quiet_NaN());
          job.codec = {};
          job.error_feedback = false;
        }
        if (own && !topk && job.codec.name == "none") {
          // Nothing to code: our own floats go straight into the reducer.
          st.reducer->accept(st.my_position, offset, job.values, st.options.weight);
          continue;
        }
        job.decode_back = own;
        pending_chunk pending;
        pending.what = own ? pending_chunk::role::own_part : pending_chunk::role::scatter_out;
        pending.member = st.active[p];
        pending.position = p;
        pending.offset = offset;
        pending.piece_begin = piece.begin;
        pending.elements = piece.size();
        if (!own)
          ++st.scatter_chunks;
        dispatch(self, compressor_encode{0, std::move(job)}, pending);
      }
    }
  }
  reduce_ready_pieces(self);
}

// Whether this attempt has received all it needs from member m: its values for our part (our
// reduction is over, or m's share of it arrived) and its part's result.
bool has_everything_from(const group_state& st, uint32_t member) {
  const auto at = std::find(st.active.begin(), st.active.end(), member);
  if (!st.assigned || at == st.active.end())
    return false;
  const auto position = static_cast<size_t>(at - st.active.begin());
  const bool scatter_in = !st.reducer || st.reducer->sender_complete(position);
  const bool gather_in = st.part_received[position] >= st.parts[position].size();
  return scatter_in && gather_in;
}

void shrink_to(group_pointer self, uint64_t new_set, const std::string& why);

// Chunks from `member` waiting at the compressors to be decoded.
size_t decoding_from(const group_state& st, uint32_t member) {
  size_t n = 0;
  for (const auto& [tag, pending] : st.pending)
    n += pending.attempt == st.attempt && pending.member == member &&
             (pending.what == pending_chunk::role::scatter_in ||
              pending.what == pending_chunk::role::gather_in)
           ? 1
           : 0;
  return n;
}

// Members that left: forgotten once we have all of their data, dropped from the round (a
// restart) when some is missing and nothing more of theirs is being decoded.
void settle_departures(group_pointer self) {
  auto& st = self->state;
  for (uint32_t m = 0; m < st.assignment.members.size() && st.departed != 0; ++m) {
    if (!in_set(st.departed, m))
      continue;
    if (!in_set(st.member_set, m) || has_everything_from(st, m)) {
      st.departed &= ~(uint64_t{1} << m);
    } else if (decoding_from(st, m) == 0) {
      st.departed &= ~(uint64_t{1} << m);
      shrink_to(self, st.member_set & ~(uint64_t{1} << m),
                short_id(st.assignment.members[m].peer_id) + " is gone");
    }
  }
}

// Drops members from the round and restarts it, if that changes the member set.
void shrink_to(group_pointer self, uint64_t new_set, const std::string& why) {
  auto& st = self->state;
  new_set &= st.member_set;
  new_set |= uint64_t{1} << st.me;
  if (st.done || new_set == st.member_set)
    return;
  spdlog::warn("round {:016x}: restarting with {} of {} members ({})", st.assignment.round_id,
               std::popcount(new_set), st.assignment.members.size(), why);
  st.member_set = new_set;
  ++st.restarts;
  st.metrics.restarts.inc();
  start_attempt(self);
}

void reject(group_pointer self, uint32_t sender, const std::string& reason,
            const std::string& detail) {
  auto& st = self->state;
  st.metrics.rejected_chunks.with({reason}).inc();
  std::string who = sender < st.assignment.members.size()
                      ? short_id(st.assignment.members[sender].peer_id)
                      : std::to_string(sender);
  spdlog::warn("round {:016x}: rejected a chunk from {}: {}", st.assignment.round_id, who, detail);
  if (sender < st.assignment.members.size() && sender != st.me)
    shrink_to(self, st.member_set & ~(uint64_t{1} << sender), "invalid data from " + who);
}

// A chunk from a member proves it alive as well as a heartbeat does. On a slow link its
// heartbeats queue behind megabytes of chunks on the same connection, and busy peers looked
// silent long enough to be suspected and dropped from the round.
void note_alive(group_pointer self, uint32_t member) {
  auto& st = self->state;
  const auto& m = st.assignment.members[member];
  auto sender = self->current_sender();
  if (!st.options.membership || !sender || sender->node() != m.averager.node())
    return;
  auto now = clock_type::now();
  if (now - st.last_alive_note[member] < alive_note_interval)
    return;
  st.last_alive_note[member] = now;
  self->send(st.options.membership, alive_atom_v, m.peer_id);
}

void handle_chunk(group_pointer self, allreduce_chunk& chunk) {
  auto& st = self->state;
  if (st.done)
    return;
  if (!st.assigned) {
    if (st.early_chunks.size() < max_early_chunks)
      st.early_chunks.push_back(std::move(chunk));
    return;
  }
  st.bytes_received += chunk.blob.bytes.size();
  st.metrics.bytes_received.inc(chunk.blob.bytes.size());
  const auto n = st.assignment.members.size();
  if (chunk.round_id != st.assignment.round_id || chunk.sender >= n || chunk.sender == st.me) {
    reject(self, n, "header", "wrong round or sender");
    return;
  }
  auto& stream = st.received[chunk.sender];
  stream.last = clock_type::now();
  if (stream.bytes == 0)
    stream.first = stream.last;
  stream.bytes += chunk.blob.bytes.size();
  if (chunk.member_set != st.member_set) {
    // A smaller set means someone noticed a failure first: follow. Anything else is stale.
    bool subset = (chunk.member_set & ~st.member_set) == 0;
    if (!subset || !in_set(chunk.member_set, st.me))
      return;
    shrink_to(self, chunk.member_set, "a member noticed a failure");
    if (st.done || chunk.member_set != st.member_set)
      return;
  }
  if (!in_set(st.member_set, chunk.sender))
    return;
  note_alive(self, chunk.sender);
  auto sender_position = static_cast<uint32_t>(
    std::find(st.active.begin(), st.active.end(), chunk.sender) - st.active.begin());
  auto phase = static_cast<allreduce_phase>(chunk.phase);
  auto part_index = chunk.blob.part_index;
  if (phase == allreduce_phase::scatter) {
    if (part_index != st.my_position || !st.reducer) {
      reject(self, chunk.sender, "wrong_part", "scatter chunk for a part this peer does not reduce");
      return;
    }
  } else if (phase == allreduce_phase::gather) {
    if (part_index >= st.parts.size() || st.active[part_index] != chunk.sender) {
      reject(self, chunk.sender, "wrong_part", "result for a part the sender does not reduce");
      return;
    }
  } else {
    reject(self, chunk.sender, "header", "unknown phase");
    return;
  }
  pending_chunk pending;
  pending.what = phase == allreduce_phase::scatter ? pending_chunk::role::scatter_in
                                                   : pending_chunk::role::gather_in;
  pending.member = chunk.sender;
  pending.position = phase == allreduce_phase::scatter ? sender_position : part_index;
  pending.offset = chunk.blob.offset;
  const auto part_length = st.parts[part_index].size();
  dispatch(self,
           compressor_decode{0, {std::move(chunk.blob), st.assignment.round_id, part_index,
                                 part_length}},
           pending);
}

// A chunk came back from a compressor: carry on with it, if its attempt is still the one running.
void handle_coded_chunk(group_pointer self, const pending_chunk& pending,
                        compressor_result& result);

void handle_coded(group_pointer self, compressor_result& result) {
  auto& st = self->state;
  auto it = st.pending.find(result.tag);
  if (it == st.pending.end())
    return;
  const auto pending = it->second;
  st.pending.erase(it);
  --st.compressor_load[pending.compressor];
  if (st.done || pending.attempt != st.attempt)
    return;
  handle_coded_chunk(self, pending, result);
  if (!st.done && st.departed != 0)
    settle_departures(self);
}

void handle_coded_chunk(group_pointer self, const pending_chunk& pending,
                        compressor_result& result) {
  auto& st = self->state;
  auto& coded = result.chunk;
  using role = pending_chunk::role;
  switch (pending.what) {
    case role::scatter_out:
    case role::own_part:
    case role::gather_out:
      if (!coded.error.empty()) {
        // Our own values would not encode (non-finite): nothing sensible can be sent.
        fail(self, errc::invalid_message, "could not encode a chunk: " + coded.error);
        return;
      }
      break;
    case role::scatter_in:
    case role::gather_in:
      if (!coded.error.empty()) {
        reject(self, pending.member, "invalid", coded.error);
        return;
      }
      break;
  }
  if (!coded.leftover.empty())
    std::copy(coded.leftover.begin(), coded.leftover.end(),
              st.options.residual->begin() + static_cast<std::ptrdiff_t>(pending.piece_begin));
  switch (pending.what) {
    case role::scatter_out: {
      if (st.options.inject == averaging_group_options::fault::die_as_sender &&
          2 * st.scatter_chunks_sent >= st.scatter_chunks)
        die_now("sender");
      ++st.scatter_chunks_sent;
      st.float_bytes += pending.elements * sizeof(float);
      send_chunk(self, pending.member,
                 {st.assignment.round_id, st.member_set,
                  static_cast<uint8_t>(allreduce_phase::scatter), st.me, std::move(coded.blob)});
      return;
    }
    case role::own_part:
      st.reducer->accept(st.my_position, pending.offset, coded.values, st.options.weight);
      reduce_ready_pieces(self);
      return;
    case role::gather_out: {
      apply_result(self, st.my_position, pending.offset, coded.values);
      for (auto member : st.active)
        if (member != st.me) {
          st.float_bytes += coded.values.size() * sizeof(float);
          send_chunk(self, member,
                     {st.assignment.round_id, st.member_set,
                      static_cast<uint8_t>(allreduce_phase::gather), st.me, coded.blob});
        }
      check_all_parts_done(self);
      return;
    }
    case role::scatter_in: {
      if (!st.reducer)
        return;
      auto status = st.reducer->accept(pending.position, pending.offset, coded.values,
                                       st.assignment.members[pending.member].weight);
      if (status != accept_status::accepted) {
        reject(self, pending.member, std::string(to_string(status)),
               std::string(to_string(status)));
        return;
      }
      reduce_ready_pieces(self);
      return;
    }
    case role::gather_in: {
      if (st.part_received[pending.position] + coded.values.size() >
          st.parts[pending.position].size()) {
        reject(self, pending.member, "duplicate", "more result values than the part holds");
        return;
      }
      apply_result(self, pending.position, pending.offset, coded.values);
      check_all_parts_done(self);
      return;
    }
  }
}

void start_round(group_pointer self, group_assignment assignment) {
  auto& st = self->state;
  const auto n = assignment.members.size();
  auto mine = std::find_if(assignment.members.begin(), assignment.members.end(),
                           [&](const group_member& m) { return m.averager.address() == self->address(); });
  if (n == 0 || n > 64 || mine == assignment.members.end() ||
      assignment.length != st.options.values->size()) {
    fail(self, errc::invalid_message, "assignment does not fit this peer");
    return;
  }
  for (const auto& m : assignment.members)
    if (!(m.weight > 0) || !std::isfinite(m.weight) || !m.averager) {
      fail(self, errc::invalid_message, "assignment has an invalid member");
      return;
    }
  st.assignment = std::move(assignment);
  st.assigned = true;
  st.me = static_cast<uint32_t>(mine - st.assignment.members.begin());
  st.member_set = n == 64 ? ~uint64_t{0} : ((uint64_t{1} << n) - 1);
  st.started = clock_type::now();
  st.last_alive_note.assign(n, clock_type::time_point{});
  st.received.assign(n, received_stream{});
  const auto& residual = st.options.residual;
  if (st.options.codec == "topk" && residual && residual->size() == st.options.values->size())
    st.residual_at_start = *residual;
  for (const auto& m : st.assignment.members)
    if (m.averager.address() != self->address())
      self->monitor(m.averager);
  st.deadline = st.started + st.options.timeout;
  self->send(self, tick_atom_v);
  start_attempt(self);
  auto early = std::move(st.early_chunks);
  for (auto& chunk : early)
    handle_chunk(self, chunk);
}

caf::behavior averaging_group(group_pointer self, averaging_group_options options) {
  auto& st = self->state;
  st.options = std::move(options);
  st.compressor_load.assign(st.options.compressors.size(), 0);
  self->set_down_handler([=](const caf::down_msg& dm) {
    auto& st = self->state;
    for (uint32_t m = 0; m < st.assignment.members.size(); ++m)
      if (st.assignment.members[m].averager.address() == dm.source && in_set(st.member_set, m)) {
        st.digests_expected &= ~(uint64_t{1} << m);
        // A member that finished and left after we had all of its data costs us nothing: on
        // a slow link we may still be decoding the others' results when it goes. Judged once
        // its chunks at the compressors are decoded.
        st.departed |= uint64_t{1} << m;
        settle_departures(self);
        maybe_quit_after_digests(self);
      }
  });
  return {
    [=](group_assignment& assignment) { start_round(self, std::move(assignment)); },
    [=](chunk_atom, allreduce_chunk& chunk) { handle_chunk(self, chunk); },
    [=](compressor_result& result) { handle_coded(self, result); },
    [=](digest_atom, const round_digest& d) {
      auto& st = self->state;
      if (!st.done || d.round_id != st.assignment.round_id || d.sender >= 64 ||
          !in_set(st.digests_expected, d.sender))
        return;
      st.digests_expected &= ~(uint64_t{1} << d.sender);
      // Our streams to the members share our uplink: their rates add up. A member's word on
      // our upload only steers our part's size, so an absurd one is merely ignored.
      if (std::isfinite(d.received_rate) && d.received_rate > 0 &&
          d.received_rate < max_plausible_rate) {
        st.upload_bytes += d.received_bytes;
        st.upload_rate += d.received_rate;
      }
      if (d.member_set != st.member_set || d.digest != st.digest) {
        st.metrics.digest_mismatches.inc();
        spdlog::error("round {:016x}: member {} ended with a different result (digest {:016x} vs "
                      "{:016x})",
                      st.assignment.round_id, short_id(st.assignment.members[d.sender].peer_id),
                      d.digest, st.digest);
      }
      maybe_quit_after_digests(self);
    },
    [=](tick_atom) {
      auto& st = self->state;
      const auto now = clock_type::now();
      if (!st.done && now >= st.deadline) {
        fail(self, errc::round_timeout,
             "all-reduce did not finish within " +
               std::to_string(st.options.timeout.count() / 1000.0) + " s");
        return;
      }
      if (st.done && now >= st.digest_deadline) {
        quit_reporting_link_rates(self);  // done waiting for digests
        return;
      }
      self->delayed_send(self, tick_towards(st.done ? st.digest_deadline : st.deadline, now),
                         tick_atom_v);
    },
  };
}

} // namespace

caf::actor spawn_averaging_group(caf::actor_system& system, averaging_group_options options) {
  if (options.compressors.empty())
    throw std::invalid_argument("an averaging group needs at least one compressor");
  return system.spawn<caf::detached>(averaging_group, std::move(options));
}

} // namespace ddactor
