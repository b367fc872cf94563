// The state server actor; see state_server.hpp.
#include "actors/state_server.hpp"

#include <deque>
#include <stdexcept>
#include <thread>

#include <spdlog/spdlog.h>

#include "monitoring/ddactor_metrics.hpp"
#include "runtime/state_transfer.hpp"

namespace ddactor {

namespace {

using clock_type = std::chrono::steady_clock;

struct served_state {
  shared_bytes bytes;
  state_manifest manifest;
  /// Chunk checksums, computed on first request: most states are never downloaded at all.
  std::vector<uint64_t> checksums;
  std::vector<bool> checksum_known;
  clock_type::time_point last_used;
};

struct state_server_state {
  state_server_options options;
  /// Newest first; the front is the current state.
  std::deque<served_state> states;
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

std::string current_state_text(const state_server_state& st) {
  if (st.states.empty())
    return "it has no state";
  const auto& m = st.states.front().manifest;
  return "it serves epoch " + std::to_string(m.epoch) + ", digest " + std::to_string(m.digest);
}

caf::behavior state_server(caf::stateful_actor<state_server_state>* self,
                           state_server_options options) {
  self->state.options = options;
  return {
    [=](caf::put_atom, const shared_bytes& bytes, int64_t epoch,
        const std::string& swarm_id) -> caf::result<state_manifest> {
      auto& st = self->state;
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
      return m;
    },
    [=](state_atom, const std::string& swarm_id) -> caf::result<state_manifest> {
      auto& st = self->state;
      if (st.states.empty())
        return make_error(errc::data_unavailable, "this peer has no training state to serve yet");
      auto& current = st.states.front();
      if (current.manifest.swarm_id != swarm_id)
        return make_error(errc::invalid_message, "this peer serves the state of swarm '" +
                                                   current.manifest.swarm_id + "', not '" +
                                                   swarm_id + "'");
      current.last_used = clock_type::now();
      return current.manifest;
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

caf::actor spawn_state_server(caf::actor_system& system, state_server_options options) {
  if (options.chunk_bytes == 0)
    throw std::invalid_argument("state server chunk size must be positive");
  if (options.max_states == 0)
    throw std::invalid_argument("a state server must keep at least one state");
  return system.spawn<caf::detached>(state_server, options);
}

} // namespace ddactor
