// The peer actor: spawns and supervises the local actors; see peer.hpp for the child lifecycle.
#include "actors/peer.hpp"

#include <spdlog/spdlog.h>

#include "actors/checkpointer.hpp"
#include "actors/data_loader.hpp"
#include "actors/trainer.hpp"
#include "monitoring/ddactor_metrics.hpp"
#include "runtime/message_types.hpp"
#include "runtime/restart_policy.hpp"

namespace ddactor {

namespace {

enum class child_kind : uint8_t { trainer, data_loader, checkpointer };

const char* to_string(child_kind kind) {
  switch (kind) {
    case child_kind::trainer: return "trainer";
    case child_kind::data_loader: return "data_loader";
    case child_kind::checkpointer: return "checkpointer";
  }
  return "?";
}

struct peer_state {
  peer_options options;
  trainer_actor trainer;
  data_loader_actor loader;
  checkpointer_actor checkpointer;
  uint64_t loader_generation = 0;
  restart_policy trainer_restarts;
  restart_policy loader_restarts;
  restart_policy checkpointer_restarts;
  bool stopping = false;
  supervision_metrics metrics{global_metrics()};
  static inline const char* name = "peer";
};

using peer_pointer = caf::stateful_actor<peer_state>*;

void start_checkpointer(peer_pointer self) {
  auto& st = self->state;
  st.checkpointer = spawn_checkpointer(
    self->system(), {st.options.config.run_dir(), st.options.config.train.keep_checkpoints});
  self->monitor(st.checkpointer);
  if (st.trainer)
    self->send(st.trainer, attach_atom_v, st.checkpointer);
}

void start_data_loader(peer_pointer self) {
  auto& st = self->state;
  data_loader_options opts;
  opts.data = st.options.train_data;
  opts.batch_size = st.options.config.data.batch_size;
  opts.seed = st.options.config.run.seed;
  opts.generation = ++st.loader_generation;
  // Faults are injected into the first incarnation only, so the restarted one proves recovery.
  if (st.loader_restarts.total_restarts() == 0)
    opts.crash_after_batches = st.options.config.debug.crash_loader_after_batches;
  st.loader = spawn_data_loader(self->system(), std::move(opts));
  self->monitor(st.loader);
  if (st.trainer)
    self->send(st.trainer, attach_atom_v, st.loader, st.loader_generation);
}

void start_trainer(peer_pointer self) {
  auto& st = self->state;
  trainer_options opts;
  opts.config = st.options.config;
  opts.checkpointer = st.checkpointer;
  opts.grid_prompts = st.options.grid_prompts;
  opts.inject_crash = st.trainer_restarts.total_restarts() == 0;
  st.trainer = spawn_trainer(self->system(), std::move(opts));
  self->monitor(st.trainer);
  if (st.loader)
    self->send(st.trainer, attach_atom_v, st.loader, st.loader_generation);
}

void shut_down_children(peer_pointer self) {
  auto& st = self->state;
  for (auto handle : {caf::actor_cast<caf::actor>(st.loader),
                      caf::actor_cast<caf::actor>(st.checkpointer),
                      caf::actor_cast<caf::actor>(st.trainer)})
    if (handle)
      self->send_exit(handle, caf::exit_reason::user_shutdown);
}

// A child died abnormally: restart it after its backoff, or give up.
void schedule_restart(peer_pointer self, child_kind kind, const caf::error& reason) {
  auto& st = self->state;
  auto& policy = kind == child_kind::trainer        ? st.trainer_restarts
                 : kind == child_kind::data_loader ? st.loader_restarts
                                                    : st.checkpointer_restarts;
  auto delay = policy.on_failure(restart_policy::clock::now());
  if (!delay) {
    spdlog::critical("{} failed {} times within its restart window; giving up ({})",
                     to_string(kind), policy.recent_restarts(), self->system().render(reason));
    shut_down_children(self);
    self->quit(reason);
    return;
  }
  st.metrics.restarts.with({to_string(kind)}).inc();
  spdlog::warn("{} failed ({}); restarting in {} ms (restart {} in this window)", to_string(kind),
               self->system().render(reason), delay->count(), policy.recent_restarts());
  self->delayed_send(self, *delay, restart_atom_v, static_cast<uint8_t>(kind));
}

caf::behavior peer(peer_pointer self, peer_options options) {
  self->state.options = std::move(options);
  start_checkpointer(self);
  start_trainer(self);
  start_data_loader(self);
  self->set_down_handler([=](const caf::down_msg& dm) {
    auto& st = self->state;
    if (dm.source == st.trainer.address()) {
      st.trainer = nullptr;
      if (!dm.reason || dm.reason == caf::exit_reason::normal || st.stopping) {
        shut_down_children(self);
        self->quit();
        return;
      }
      schedule_restart(self, child_kind::trainer, dm.reason);
    } else if (dm.source == st.loader.address()) {
      st.loader = nullptr;
      if (!st.stopping)
        schedule_restart(self, child_kind::data_loader, dm.reason);
    } else if (dm.source == st.checkpointer.address()) {
      st.checkpointer = nullptr;
      if (!st.stopping)
        schedule_restart(self, child_kind::checkpointer, dm.reason);
    }
  });
  return {
    [=](restart_atom, uint8_t kind) {
      if (self->state.stopping)
        return;
      switch (static_cast<child_kind>(kind)) {
        case child_kind::trainer: start_trainer(self); break;
        case child_kind::data_loader: start_data_loader(self); break;
        case child_kind::checkpointer: start_checkpointer(self); break;
      }
      spdlog::info("{} restarted", to_string(static_cast<child_kind>(kind)));
    },
    [=](stop_atom) {
      auto& st = self->state;
      if (st.stopping)
        return;
      st.stopping = true;
      if (!st.trainer) {
        shut_down_children(self);
        self->quit();
        return;
      }
      // The trainer checkpoints and quits; its down message then ends the peer.
      self->request(st.trainer, std::chrono::minutes(10), stop_atom_v)
        .then([](int64_t) {},
              [=](const caf::error& err) {
                spdlog::error("trainer did not stop cleanly: {}", self->system().render(err));
                shut_down_children(self);
                self->quit(err);
              });
    },
    [=](status_atom) {
      auto& st = self->state;
      return supervision_report{st.trainer_restarts.total_restarts(),
                                st.loader_restarts.total_restarts(),
                                st.checkpointer_restarts.total_restarts()};
    },
  };
}

} // namespace

caf::actor spawn_peer(caf::actor_system& system, peer_options options) {
  return system.spawn(peer, std::move(options));
}

} // namespace ddactor
