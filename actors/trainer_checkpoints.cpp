// The trainer's checkpoints: the newest one that loads is restored at the start; snapshots go to
// the checkpointer, and one that could not be written is retried with backoff.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <exception>
#include <map>
#include <memory>
#include <string>
#include <utility>

#include "actors/trainer_state.hpp"
#include "models/checkpoint.hpp"
#include "monitoring/peer_health.hpp"
#include "runtime/checkpoint_files.hpp"
#include "runtime/errors.hpp"

namespace ddactor::trainer_internal {

namespace {

// Waits between attempts to write a checkpoint that failed, and how often the final one is tried.
constexpr std::chrono::milliseconds first_checkpoint_backoff{1000};
constexpr std::chrono::milliseconds max_checkpoint_backoff{60000};
constexpr int final_checkpoint_attempts = 4;

std::map<std::string, torch::Tensor> extra_tensors(const trainer_state& st) {
  if (!st.outer)
    return {};
  return {{"outer.anchor", st.outer->anchor()}, {"outer.momentum", st.outer->momentum()}};
}

// A checkpoint that could not be written is not lost work yet: the snapshot is kept and written
// again with backoff (a full disk may be cleaned, a folder's permissions fixed), the newest due
// snapshot replacing an older one. Meanwhile the peer is unhealthy (/healthz) and
// ddactor_checkpoint_failing is 1. At the end of a run the final checkpoint gets a few attempts,
// then the trainer fails with io_failure, so that the run never reports success unsaved.
void on_checkpoint_written(trainer_pointer self, const std::string& path, int64_t step) {
  auto& st = self->state;
  st.checkpoint_in_flight = false;
  spdlog::info("checkpoint written: {}", path);
  st.last_checkpoint = path;
  if (st.checkpoint_failures > 0) {
    spdlog::info("checkpoints are written again after {} failed attempt(s)",
                 st.checkpoint_failures);
    peer_health::global().clear_problem("checkpoint");
    st.checkpoints.failing.set(0);
  }
  st.checkpoint_failures = 0;
  if (st.pending_checkpoint && st.pending_checkpoint->step == step)
    st.pending_checkpoint.reset();
  if (st.pending_checkpoint) {
    attempt_checkpoint(self);  // a newer one came due meanwhile
    return;
  }
  if (st.quit_after_checkpoint) {
    if (st.stop_promise)
      st.stop_promise->deliver(current_step(st));
    self->quit();
  }
}

void on_checkpoint_failed(trainer_pointer self, const std::string& why) {
  auto& st = self->state;
  st.checkpoint_in_flight = false;
  ++st.checkpoint_failures;
  const auto backoff =
    std::min(max_checkpoint_backoff,
             first_checkpoint_backoff * (1 << std::min(st.checkpoint_failures - 1, 10)));
  st.next_checkpoint_attempt = clock_type::now() + backoff;
  st.checkpoints.failing.set(1);
  const auto step = st.pending_checkpoint ? st.pending_checkpoint->step : current_step(st);
  const std::string where = st.last_checkpoint.empty()
                              ? "no checkpoint of this run is on disk yet"
                              : "the newest on disk is " + st.last_checkpoint;
  peer_health::global().set_problem(
    "checkpoint", fmt::format("the checkpoint of {} {} cannot be written ({}); {}",
                              st.swarm ? "epoch" : "step", step, why, where));
  if (st.quit_after_checkpoint && st.checkpoint_failures >= final_checkpoint_attempts) {
    spdlog::critical("the final checkpoint (at {} {}) could not be written after {} attempts: {}; "
                     "{}",
                     st.swarm ? "epoch" : "step", step, st.checkpoint_failures, why, where);
    auto error = make_error(errc::io_failure, "the final checkpoint could not be written: " + why);
    if (st.stop_promise)
      st.stop_promise->deliver(error);
    self->quit(std::move(error));
    return;
  }
  spdlog::error("checkpoint at {} {} not written: {}; retrying in {:.0f} s ({}; attempt {})",
                st.swarm ? "epoch" : "step", step, why,
                std::chrono::duration<double>(backoff).count(), where, st.checkpoint_failures);
  self->send(self, retry_atom_v);
}

} // namespace

// Restores the newest checkpoint that loads; corrupt ones are skipped with a warning.
void restore_latest(trainer_state& st) {
  auto files = list_checkpoints(st.options.config.run_dir());
  for (auto it = files.rbegin(); it != files.rend(); ++it) {
    try {
      auto content = read_safetensors_file(it->path);
      st.progress = restore_training_state(content, *st.model);
      if (st.outer) {
        const auto* anchor = content.find("outer.anchor");
        const auto* momentum = content.find("outer.momentum");
        if (anchor != nullptr && momentum != nullptr)
          st.outer->load(from_stored_tensor(*anchor), from_stored_tensor(*momentum));
        else
          st.outer = std::make_unique<outer_nesterov>(st.model->parameters().values(),
                                                      st.options.config.train.outer_lr,
                                                      st.options.config.train.outer_momentum);
      }
      spdlog::info("resumed from {}: optimizer step {}{}; the data continues in pass {} at "
                   "image {}",
                   it->path.string(), st.progress.step,
                   st.swarm ? fmt::format(", swarm epoch {}", st.progress.epoch) : std::string(),
                   st.progress.data_epoch + 1, st.progress.data_position);
      return;
    } catch (const std::exception& e) {
      spdlog::warn("skipping checkpoint {}: {}", it->path.string(), e.what());
    }
  }
}

// Sends the pending snapshot to the checkpointer, unless one is on its way or its backoff runs.
void attempt_checkpoint(trainer_pointer self) {
  auto& st = self->state;
  if (st.checkpoint_in_flight || !st.pending_checkpoint ||
      clock_type::now() < st.next_checkpoint_attempt)
    return;
  st.checkpoint_in_flight = true;
  const auto snapshot = *st.pending_checkpoint;
  self->request(st.options.checkpointer, std::chrono::minutes(5), save_atom_v, snapshot)
    .then([=](const std::string& path) { on_checkpoint_written(self, path, snapshot.step); },
          [=](const caf::error& err) {
            on_checkpoint_failed(self, self->system().render(err));
          });
}

// Snapshot now (the newest replaces one still waiting), write on the checkpointer's thread. The
// model's exports in other tools' formats (an SD run's LoRA file; at the end its diffusers
// folder) are written beside it, here: they are small, or written once.
void save_checkpoint(trainer_pointer self) {
  auto& st = self->state;
  st.pending_checkpoint = checkpoint_snapshot{
    snapshot_training_state(*st.model, st.progress, {}, extra_tensors(st)), current_step(st)};
  try {
    st.model->write_exports(st.options.config.run_dir(),
                            st.quit_after_checkpoint ? model_trainer::export_moment::end
                                                     : model_trainer::export_moment::checkpoint);
  } catch (const std::exception& e) {
    spdlog::error("exporting the model at {} {} failed: {}", st.swarm ? "epoch" : "step",
                  current_step(st), e.what());
  }
  attempt_checkpoint(self);
}

// The last checkpoint of this trainer: it quits once the snapshot is on disk (or fails after
// final_checkpoint_attempts).
void save_final_checkpoint(trainer_pointer self) {
  auto& st = self->state;
  st.quit_after_checkpoint = true;
  st.next_checkpoint_attempt = {};  // no backoff left over from periodic failures
  save_checkpoint(self);
}

} // namespace ddactor::trainer_internal
