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
#include <thread>

#include "monitoring/ddactor_metrics.hpp"
#include "runtime/allreduce/butterfly_partition.hpp"
#include "runtime/allreduce/chunk_coding.hpp"
#include "runtime/allreduce/weighted_reduction.hpp"
#include "runtime/compression/codec_factory.hpp"

namespace ddactor {

namespace {

using clock_type = std::chrono::steady_clock;

// How long a finished member waits for the others' digests before it leaves.
constexpr auto digest_wait = std::chrono::seconds(5);
// Chunks that arrive before this member's own assignment are kept, up to this many.
constexpr size_t max_early_chunks = 4096;
// At most one liveness note per member to membership in this interval.
constexpr auto alive_note_interval = std::chrono::milliseconds(200);

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
  std::vector<float> output;
  std::vector<size_t> part_received;  // elements of each part's result received
  size_t parts_done = 0;
  bool done = false;
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

// The codec for one piece of one phase, or null for raw float32. Top-k is fresh per piece (its
// error feedback lives in options.residual); in the gather phase it keeps up to
// `senders` times as many entries, enough for every entry the senders kept, so the result of the
// reduction is sent without loss.
std::unique_ptr<tensor_codec> codec_for(group_state& st, part_range piece, size_t senders,
                                        allreduce_phase phase) {
  const auto& name = st.options.codec;
  if (name == "none")
    return nullptr;
  if (name == "adaptive") {
    if (st.options.tensor_bounds && small_tensor(st, piece))
      return nullptr;
    return make_codec("int8", st.options.codec_settings);
  }
  if (name == "topk") {
    auto settings = st.options.codec_settings;
    if (phase == allreduce_phase::gather) {
      auto kept = static_cast<double>(std::max<long long>(
        1, std::llround(settings.topk_fraction * static_cast<double>(piece.size()))));
      settings.topk_fraction =
        std::min(1.0, (static_cast<double>(senders) * kept + 0.5) / static_cast<double>(piece.size()));
    }
    return make_codec("topk", settings);
  }
  return make_codec(name, st.options.codec_settings);
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
  spdlog::warn("round {:016x}: {} ({})", st.assignment.round_id, why, to_string(code));
  st.metrics.round_failures.with({code == errc::round_timeout ? "deadline" : "invalid_assignment"})
    .inc();
  average_outcome outcome;
  outcome.values = st.options.values;
  outcome.failed = true;
  outcome.detail = why;
  reply_and_finish(self, std::move(outcome));
  self->quit();
}

// Every member has finished: compare digests, then leave.
void maybe_quit_after_digests(group_pointer self) {
  auto& st = self->state;
  if (st.done && st.digests_expected == 0)
    self->quit();
}

void finish_round(group_pointer self) {
  auto& st = self->state;
  st.done = true;
  st.digest = blob_checksum(std::span<const char>(reinterpret_cast<const char*>(st.output.data()),
                                                  st.output.size() * sizeof(float)));
  for (auto member : st.active)
    if (member != st.me)
      self->send(st.assignment.members[member].averager, digest_atom_v,
                 round_digest{st.assignment.round_id, st.member_set, st.me, st.digest});
  average_outcome outcome;
  outcome.values = std::make_shared<const std::vector<float>>(std::move(st.output));
  outcome.group_size = static_cast<int32_t>(st.active.size());
  outcome.averaged = st.active.size() > 1;
  if (st.float_bytes > 0)
    st.metrics.compression_ratio.set(static_cast<double>(st.bytes_sent) /
                                     static_cast<double>(st.float_bytes));
  reply_and_finish(self, std::move(outcome));
  // Wait for the others' digests (bounded), so a mismatch is noticed and counted.
  st.digests_expected = st.member_set & ~(uint64_t{1} << st.me);
  if (st.active.size() <= 1)
    st.digests_expected = 0;
  self->delayed_send(self, digest_wait, timeout_atom_v, caf::ok_atom_v);
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

// This peer's part is reduced: encode it once, send it to everyone and apply the very same
// encoding locally, so every member ends with identical values even with lossy codecs.
void maybe_finish_reduction(group_pointer self) {
  auto& st = self->state;
  if (!st.reducer || !st.reducer->complete())
    return;
  if (st.options.inject == averaging_group_options::fault::die_as_reducer)
    die_now("reducer");
  auto result = st.reducer->finish();
  st.reducer.reset();
  const auto& part = st.parts[st.my_position];
  std::span<const float> values(result.values);
  for (const auto& chunk : chunk_ranges(part, st.options.chunk_elements)) {
    for (const auto& piece : split_at_tensors(st, chunk)) {
      auto offset = piece.begin - part.begin;
      auto codec = codec_for(st, piece, st.active.size(), allreduce_phase::gather);
      auto blob = encode_chunk(st.assignment.round_id, st.my_position, offset,
                               values.subspan(offset, piece.size()), codec.get());
      auto decoded = decode_chunk(blob, st.assignment.round_id, st.my_position, part.size());
      apply_result(self, st.my_position, offset, decoded);
      for (auto member : st.active)
        if (member != st.me) {
          st.float_bytes += piece.size() * sizeof(float);
          send_chunk(self, member,
                     {st.assignment.round_id, st.member_set,
                      static_cast<uint8_t>(allreduce_phase::gather), st.me, blob});
        }
    }
  }
  check_all_parts_done(self);
}

// (Re)starts the all-reduce among the members in st.member_set.
void start_attempt(group_pointer self) {
  auto& st = self->state;
  st.active.clear();
  for (uint32_t m = 0; m < st.assignment.members.size(); ++m)
    if (in_set(st.member_set, m))
      st.active.push_back(m);
  st.my_position = static_cast<uint32_t>(
    std::find(st.active.begin(), st.active.end(), st.me) - st.active.begin());
  const auto& values = *st.options.values;
  st.output.assign(values.begin(), values.end());
  st.parts = butterfly_partition(values.size(), st.active.size());
  st.part_received.assign(st.parts.size(), 0);
  st.parts_done = 0;
  for (const auto& part : st.parts)
    if (part.empty())
      ++st.parts_done;
  const auto& my_part = st.parts[st.my_position];
  st.reducer = my_part.empty()
                 ? nullptr
                 : std::make_unique<part_reducer>(my_part.size(), st.active.size());
  if (st.active.size() == 1) {
    // Everyone else failed: this peer's own values are the result.
    st.reducer.reset();
    st.parts_done = st.parts.size();
    check_all_parts_done(self);
    return;
  }
  // Scatter: part p of our vector to the member that reduces it; our own part into our reducer.
  std::span<const float> all(values);
  size_t chunks_to_send = 0;
  for (uint32_t p = 0; p < st.active.size(); ++p)
    if (p != st.my_position)
      chunks_to_send += chunk_ranges(st.parts[p], st.options.chunk_elements).size();
  size_t chunks_sent = 0;
  bool topk = st.options.codec == "topk" && st.options.residual &&
              st.options.residual->size() == values.size();
  for (uint32_t p = 0; p < st.active.size(); ++p) {
    const auto& part = st.parts[p];
    for (const auto& chunk : chunk_ranges(part, st.options.chunk_elements)) {
      if (p != st.my_position && st.options.inject == averaging_group_options::fault::die_as_sender &&
          2 * chunks_sent >= chunks_to_send)
        die_now("sender");
      for (const auto& piece : split_at_tensors(st, chunk)) {
        auto slice = all.subspan(piece.begin, piece.size());
        auto offset = piece.begin - part.begin;
        std::vector<float> input;
        if (topk) {
          // Error feedback: what earlier rounds dropped rides along with this round's values.
          input.assign(slice.begin(), slice.end());
          auto* residual = st.options.residual->data() + piece.begin;
          for (size_t i = 0; i < input.size(); ++i)
            input[i] += residual[i];
          slice = input;
        }
        auto codec = codec_for(st, piece, st.active.size(), allreduce_phase::scatter);
        tensor_blob blob;
        if (st.options.corrupt_chunks && p != st.my_position) {
          std::vector<float> poison(piece.size(), std::numeric_limits<float>::quiet_NaN());
          blob = encode_chunk(st.assignment.round_id, p, offset, poison, nullptr);
        } else {
          blob = encode_chunk(st.assignment.round_id, p, offset, slice, codec.get());
        }
        std::vector<float> sent_values;
        if (topk || p == st.my_position)
          sent_values = codec ? decode_chunk(blob, st.assignment.round_id, p, part.size())
                              : std::vector<float>(slice.begin(), slice.end());
        if (topk) {
          auto* residual = st.options.residual->data() + piece.begin;
          for (size_t i = 0; i < sent_values.size(); ++i)
            residual[i] = slice[i] - sent_values[i];
        }
        if (p == st.my_position) {
          st.reducer->accept(st.my_position, offset, sent_values, st.options.weight);
          continue;
        }
        st.float_bytes += piece.size() * sizeof(float);
        send_chunk(self, st.active[p],
                   {st.assignment.round_id, st.member_set,
                    static_cast<uint8_t>(allreduce_phase::scatter), st.me, std::move(blob)});
      }
      if (p != st.my_position)
        ++chunks_sent;
    }
  }
  maybe_finish_reduction(self);
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
    std::vector<float> values;
    try {
      values = decode_chunk(chunk.blob, st.assignment.round_id, part_index,
                            st.parts[part_index].size());
    } catch (const std::exception& e) {
      reject(self, chunk.sender, "invalid", e.what());
      return;
    }
    auto status = st.reducer->accept(sender_position, chunk.blob.offset, values,
                                     st.assignment.members[chunk.sender].weight);
    if (status != accept_status::accepted) {
      reject(self, chunk.sender, std::string(to_string(status)), std::string(to_string(status)));
      return;
    }
    maybe_finish_reduction(self);
  } else if (phase == allreduce_phase::gather) {
    if (part_index >= st.parts.size() || st.active[part_index] != chunk.sender) {
      reject(self, chunk.sender, "wrong_part", "result for a part the sender does not reduce");
      return;
    }
    std::vector<float> values;
    try {
      values = decode_chunk(chunk.blob, st.assignment.round_id, part_index,
                            st.parts[part_index].size());
    } catch (const std::exception& e) {
      reject(self, chunk.sender, "invalid", e.what());
      return;
    }
    if (st.part_received[part_index] + values.size() > st.parts[part_index].size()) {
      reject(self, chunk.sender, "duplicate", "more result values than the part holds");
      return;
    }
    apply_result(self, part_index, chunk.blob.offset, values);
    check_all_parts_done(self);
  } else {
    reject(self, chunk.sender, "header", "unknown phase");
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
  for (const auto& m : st.assignment.members)
    if (m.averager.address() != self->address())
      self->monitor(m.averager);
  self->delayed_send(self, st.options.timeout, timeout_atom_v);
  start_attempt(self);
  auto early = std::move(st.early_chunks);
  for (auto& chunk : early)
    handle_chunk(self, chunk);
}

caf::behavior averaging_group(group_pointer self, averaging_group_options options) {
  auto& st = self->state;
  st.options = std::move(options);
  self->set_down_handler([=](const caf::down_msg& dm) {
    auto& st = self->state;
    for (uint32_t m = 0; m < st.assignment.members.size(); ++m)
      if (st.assignment.members[m].averager.address() == dm.source && in_set(st.member_set, m)) {
        st.digests_expected &= ~(uint64_t{1} << m);
        shrink_to(self, st.member_set & ~(uint64_t{1} << m),
                  short_id(st.assignment.members[m].peer_id) + " is gone");
        maybe_quit_after_digests(self);
      }
  });
  return {
    [=](group_assignment& assignment) { start_round(self, std::move(assignment)); },
    [=](chunk_atom, allreduce_chunk& chunk) { handle_chunk(self, chunk); },
    [=](digest_atom, const round_digest& d) {
      auto& st = self->state;
      if (!st.done || d.round_id != st.assignment.round_id || d.sender >= 64 ||
          !in_set(st.digests_expected, d.sender))
        return;
      st.digests_expected &= ~(uint64_t{1} << d.sender);
      if (d.member_set != st.member_set || d.digest != st.digest) {
        st.metrics.digest_mismatches.inc();
        spdlog::error("round {:016x}: member {} ended with a different result (digest {:016x} vs "
                      "{:016x})",
                      st.assignment.round_id, short_id(st.assignment.members[d.sender].peer_id),
                      d.digest, st.digest);
      }
      maybe_quit_after_digests(self);
    },
    [=](timeout_atom) {
      // The round's deadline.
      auto& st = self->state;
      if (!st.done)
        fail(self, errc::round_timeout,
             "all-reduce did not finish within " +
               std::to_string(st.options.timeout.count() / 1000.0) + " s");
    },
    [=](timeout_atom, caf::ok_atom) {
      // Done waiting for digests.
      self->quit();
    },
  };
}

} // namespace

caf::actor spawn_averaging_group(caf::actor_system& system, averaging_group_options options) {
  return system.spawn<caf::detached>(averaging_group, std::move(options));
}

} // namespace ddactor
