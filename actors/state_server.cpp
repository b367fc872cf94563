// The state server actor; see state_server.hpp.
#include "actors/state_server.hpp"

#include <deque>
#include <stdexcept>
#include <thread>

#include <spdlog/spdlog.h>

#include "actors/local_control.hpp"
#include "monitoring/ddactor_metrics.hpp"
#include "runtime/actor_ticks.hpp"
#include "runtime/state_transfer.hpp"

namespace ddactor {

namespace {

using clock_type = std::chrono::steady_clock;

// Manifest requests that may wait for a newer state at once; beyond that they are answered at
// once (a flood of them must not grow the server without bound).
constexpr size_t max_waiting_requests = 256;

struct served_state {
  shared_bytes bytes;
  state_manifest manifest;
  /// Chunk checksums, computed on first request: most states are never downloaded at all.
  std::vector<uint64_t> checksums;
  std::vector<bool> checksum_known;
  clock_type::time_point last_used;
};

// A manifest request that waits for a newer state than the current one.
struct waiting_request {
  std::string swarm_id;
  int64_t min_epoch = 0;
  clock_type::time_point until;
  caf::response_promise promise;
};

struct state_server_state {
  state_server_options options;
  /// Newest first; the front is the current state.
  std::deque<served_state> states;
  std::vector<waiting_request> waiting;
  bool ticking = false;
  state_transfer_metrics metrics{global_metrics()};
  static inline const char* name = "state_server";

  /// Drops older states that nobody used for retain_idle, and the oldest beyond max_states.
  void prune(clock_type::time_point now) {
    while (states.size() > options.max_states)
      states.pop_back();
    for (auto i = states.begin() + (states.empty() ? 0 : 1); i != states.end();) {
      if (now - i->last_used > options.retain_idle) {
        spdlog::debug("state server: dropped epoch {} (digest {:016x}), unused", i->manifest.epoch,
                      i->manifest.digest);
        i = states.erase(i);
      } else {
        ++i;
      }
    }
  }

  served_state* find(uint64_t digest) {
    for (auto& s : states)
      if (s.manifest.digest == digest)
        return &s;
    return nullptr;
  }
};

// The answer to a manifest request: the current state, if it is of the swarm asked for.
caf::expected<state_manifest> current_manifest(state_server_state& st, const std::string& swarm_id) {
  if (st.states.empty())
    return make_error(errc::data_unavailable, "this peer has no training state to serve yet");
  auto& current = st.states.front();
  if (current.manifest.swarm_id != swarm_id)
    return make_error(errc::invalid_message, "this peer serves the state of swarm '" +
                                               current.manifest.swarm_id + "', not '" + swarm_id +
                                               "'");
  current.last_used = clock_type::now();
  return current.manifest;
}

// Answers the waiting requests that the current state satisfies, or whose wait is over.
void answer_waiting(state_server_actor::stateful_pointer<state_server_state> self) {
  auto& st = self->state;
  const auto now = clock_type::now();
  const int64_t current = st.states.empty() ? -1 : st.states.front().manifest.epoch;
  std::erase_if(st.waiting, [&](waiting_request& w) {
    if (current < w.min_epoch && now < w.until)
      return false;
    auto answer = current_manifest(st, w.swarm_id);
    if (answer)
      w.promise.deliver(std::move(*answer));
    else
      w.promise.deliver(std::move(answer.error()));
    return true;
  });
  if (!st.waiting.empty() && !st.ticking) {
    st.ticking = true;
    auto first = st.waiting.front().until;
    for (const auto& w : st.waiting)
      first = std::min(first, w.until);
    self->delayed_send(self, tick_towards(first, now), tick_atom_v);
  }
}

std::string current_state_text(const state_server_state& st) {
  if (st.states.empty())
    return "it has no state";
  const auto& m = st.states.front().manifest;
  return "it serves epoch " + std::to_string(m.epoch) + ", digest " + std::to_string(m.digest);
}

state_server_actor::behavior_type
state_server(state_server_actor::stateful_pointer<state_server_state> self,
             state_server_options options) {
  self->state.options = options;
  return {
    [=](caf::put_atom, const shared_bytes& bytes, int64_t epoch,
        const std::string& swarm_id) -> caf::result<state_manifest> {
      auto& st = self->state;
      if (refuse_remote(self, "state_server", "put"))
        return make_error(errc::invalid_message, "state server: states come from this peer only");
      if (!bytes)
        return make_error(errc::invalid_message, "state server was given no state (null buffer)");
      const auto now = clock_type::now();
      served_state next;
      next.bytes = bytes;
      next.manifest = make_state_manifest(*bytes, epoch, swarm_id, st.options.chunk_bytes);
      next.checksums.assign(next.manifest.chunk_count, 0);
      next.checksum_known.assign(next.manifest.chunk_count, false);
      next.last_used = now;
      // The same bytes again (a re-put of one epoch) replace their earlier copy.
      for (auto i = st.states.begin(); i != st.states.end(); ++i)
        if (i->manifest.digest == next.manifest.digest) {
          next.last_used = std::max(next.last_used, i->last_used);
          st.states.erase(i);
          break;
        }
      st.states.push_front(std::move(next));
      st.prune(now);
      const auto& m = st.states.front().manifest;
      spdlog::info("state server: serving epoch {} of swarm '{}' ({:.1f} MB, {} chunks, digest "
                   "{:016x}; {} states kept)",
                   m.epoch, m.swarm_id, static_cast<double>(m.total_bytes) / 1e6, m.chunk_count,
                   m.digest, st.states.size());
      auto manifest = m;
      answer_waiting(self);
      return manifest;
    },
    [=](state_atom, const std::string& swarm_id,
        int64_t min_epoch) -> caf::result<state_manifest> {
      auto& st = self->state;
      const bool newer_wanted = !st.states.empty() && st.states.front().manifest.epoch < min_epoch;
      if (!newer_wanted || st.options.manifest_wait.count() <= 0 ||
          st.waiting.size() >= max_waiting_requests) {
        auto answer = current_manifest(st, swarm_id);
        if (!answer)
          return std::move(answer.error());
        return std::move(*answer);
      }
      auto promise = self->make_response_promise();
      st.waiting.push_back(
        {swarm_id, min_epoch, clock_type::now() + st.options.manifest_wait, promise});
      answer_waiting(self);
      return promise;
    },
    [=](tick_atom) {
      if (refuse_remote(self, "state_server", "tick"))
        return;
      self->state.ticking = false;
      answer_waiting(self);
    },
    [=](state_atom, uint64_t digest, uint64_t index) -> caf::result<state_chunk> {
      auto& st = self->state;
      const auto now = clock_type::now();
      st.prune(now);
      auto* served = st.find(digest);
      if (!served)
        return make_error(errc::data_unavailable, "state " + std::to_string(digest) +
                                                    " is no longer served: " +
                                                    current_state_text(st));
      const auto& m = served->manifest;
      if (index >= m.chunk_count)
        return make_error(errc::invalid_message, "chunk " + std::to_string(index) +
                                                   " is out of range: the state has " +
                                                   std::to_string(m.chunk_count) + " chunks");
      served->last_used = now;
      if (st.options.serve_delay.count() > 0)
        std::this_thread::sleep_for(st.options.serve_delay); // detached: blocks only this actor
      const auto range = chunk_range(m, index);
      const auto begin = served->bytes->begin() + static_cast<std::ptrdiff_t>(range.offset);
      state_chunk chunk;
      chunk.digest = digest;
      chunk.index = index;
      chunk.bytes.assign(begin, begin + static_cast<std::ptrdiff_t>(range.size));
      if (!served->checksum_known[index]) {
        served->checksums[index] = state_chunk_checksum(digest, index, chunk.bytes);
        served->checksum_known[index] = true;
      }
      chunk.checksum = served->checksums[index];
      st.metrics.served_chunks.inc();
      return chunk;
    },
  };
}

} // namespace

state_server_actor spawn_state_server(caf::actor_system& system, state_server_options options) {
  if (options.chunk_bytes == 0)
    throw std::invalid_argument("state server chunk size must be positive");
  if (options.max_states == 0)
    throw std::invalid_argument("a state server must keep at least one state");
  return system.spawn<caf::detached>(state_server, options);
}

} // namespace ddactor
