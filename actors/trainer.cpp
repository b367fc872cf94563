// The trainer actor; see trainer.hpp for its lifecycle, alone and in a swarm. This file holds its
// behaviour (the message handlers), a lone peer's step, the progress log and the end of a run;
// the other parts are listed in trainer_state.hpp.
#include "actors/trainer.hpp"

#include <spdlog/spdlog.h>

#include <chrono>
#include <cmath>
#include <limits>
#include <mutex>
#include <string>
#include <thread>
#include <utility>

#include "actors/local_control.hpp"
#include "actors/trainer_state.hpp"
#include "models/device_transfer.hpp"
#include "models/model_config.hpp"
#include "models/node_training.hpp"
#include "models/out_of_memory.hpp"
#include "models/readable_error.hpp"
#include "monitoring/peer_health.hpp"
#include "runtime/actor_ticks.hpp"
#include "runtime/errors.hpp"
#include "runtime/progress_meter.hpp"

namespace ddactor::trainer_internal {

const std::string& averaging_mode(const trainer_state& st) {
  return st.options.config.train.averaging;
}

// The step count the limits and logs refer to: epochs in a swarm, optimizer steps alone.
int64_t current_step(const trainer_state& st) {
  return st.swarm ? st.progress.epoch : st.progress.step;
}

bool reached_limit(const trainer_state& st) {
  const auto& t = st.options.config.train;
  if (t.steps > 0 && current_step(st) >= t.steps)
    return true;
  if (t.max_seconds > 0 &&
      std::chrono::duration<double>(clock_type::now() - st.started).count() >= t.max_seconds)
    return true;
  return false;
}

void record_step_metrics(trainer_state& st, const step_result& r, double seconds) {
  if (r.skipped)
    st.metrics.skipped_steps.inc();
  st.metrics.step_seconds.observe(seconds);
  st.metrics.steps.inc();
  st.metrics.samples.inc(r.samples);
  st.metrics.step.set(static_cast<double>(r.step));
  st.metrics.loss.set(r.loss);
  st.metrics.learning_rate.set(r.lr);
}

namespace {

// Examples a step of `batch` runs forward and backward at a time (data.micro_batch_size).
int64_t examples_at_once(const trainer_state& st, int64_t batch_count) {
  const int64_t micro = st.model->settings().micro_batch_size;
  return micro > 0 ? std::min(micro, batch_count) : batch_count;
}

} // namespace

void check_injected_faults(const trainer_state& st, const training_batch& batch) {
  const auto& cfg = st.options.config;
  if (cfg.debug.batch_delay_ms > 0)
    std::this_thread::sleep_for(std::chrono::milliseconds(cfg.debug.batch_delay_ms));
  if (st.options.inject_crash && cfg.debug.crash_trainer_at_step > 0 &&
      current_step(st) + 1 == cfg.debug.crash_trainer_at_step)
    throw std::runtime_error("injected trainer crash (debug.crash_trainer_at_step)");
  if (cfg.debug.out_of_memory_above > 0 &&
      examples_at_once(st, batch.count) > cfg.debug.out_of_memory_above)
    throw_out_of_memory("injected out of memory (debug.out_of_memory_above)");
}

// What a failed step ends the trainer with: out of memory (the peer restarts it with a smaller
// micro-batch; the detail names the size, so that a restart that fails again is not taken for
// the same failure) or a training failure.
caf::error step_failure(trainer_state& st, const std::exception& e) {
  const auto who = st.options.ranks > 1
                     ? fmt::format("trainer {} of {}", st.options.rank, st.options.ranks)
                     : std::string("trainer");
  const auto where = fmt::format("{} {}", st.swarm ? "epoch" : "step", current_step(st) + 1);
  if (is_out_of_memory(e)) {
    const int64_t at_once = examples_at_once(st, st.options.config.data.batch_size);
    st.metrics.out_of_memory.inc();
    spdlog::error("{} ran out of memory at {} with {} examples at a time: {}", who, where,
                  at_once, readable_error(e));
    return make_error(errc::out_of_memory, std::to_string(at_once) +
                                             " examples at a time: " + readable_error(e));
  }
  st.metrics.failures.inc();
  spdlog::error("{} failed at {}: {}", who, where, readable_error(e));
  return make_error(errc::training_failed, readable_error(e));
}

namespace {

// Time left, from the step rate smoothed over tens of seconds: one slow round or checkpoint
// must not make the ETA jump (it once went from 4h35m to 23h41m within 10 s).
double eta_seconds(const trainer_state& st) {
  const auto& t = st.options.config.train;
  double eta = std::numeric_limits<double>::infinity();
  if (t.steps > 0)
    eta = st.step_rate.seconds_for(static_cast<double>(t.steps - current_step(st)));
  if (t.max_seconds > 0)
    eta = std::min(eta, t.max_seconds - std::chrono::duration<double>(clock_type::now() -
                                                                      st.started)
                                          .count());
  return eta;
}

void log_progress(trainer_state& st, double lr) {
  auto now = clock_type::now();
  double elapsed = std::chrono::duration<double>(now - st.window_start).count();
  double samples_per_second = elapsed > 0 ? st.window_samples / elapsed : 0;
  st.step_rate.add(static_cast<double>(st.window_steps), elapsed);
  st.progress_logged = true;
  const auto& t = st.options.config.train;
  auto target = t.steps > 0 ? std::to_string(t.steps) : std::string("inf");
  double loss = st.window_loss / std::max<int64_t>(st.window_steps, 1);
  if (st.swarm) {
    // With averaging.overlap: the share of samples trained while a round ran (0%: rounds were
    // shorter than a batch; near 100%: the network, not the compute, sets the pace).
    const double overlapped_share =
      static_cast<double>(st.window_overlapped) / std::max<int64_t>(st.window_samples, 1);
    const auto overlap =
      overlapping(st) ? fmt::format(" | overlap {:.0f}%", 100.0 * overlapped_share) : std::string();
    spdlog::info("epoch {}/{} | loss {:.4f} | peers {} | swarm {:.1f} samples/s | local {:.1f} "
                 "samples/s | last round: {} of {} in {:.3f}s, sent {:.2f} MB, received {:.2f} "
                 "MB{} | lr {:.2e} | ETA {}",
                 st.progress.epoch, target, loss, st.swarm_view.swarm_size,
                 st.swarm_view.samples_per_second, samples_per_second,
                 st.last_round.averaged ? "group" : "alone", st.last_round.group_size,
                 st.last_round.seconds, st.last_round.bytes_sent / 1e6,
                 st.last_round.bytes_received / 1e6, overlap, lr,
                 format_duration(eta_seconds(st)));
  } else {
    spdlog::info("step {}/{} | loss {:.4f} | {:.1f} samples/s | lr {:.2e} | data pass {} | "
                 "ETA {}",
                 st.progress.step, target, loss, samples_per_second, lr,
                 st.progress.data_epoch + 1, format_duration(eta_seconds(st)));
  }
  st.metrics.samples_per_second.set(samples_per_second);
  st.window_start = now;
  st.window_samples = 0;
  st.window_overlapped = 0;
  st.window_steps = 0;
  st.window_loss = 0;
}

} // namespace

void finish(trainer_pointer self, const char* why) {
  auto& st = self->state;
  if (st.finishing)
    return;
  st.finishing = true;
  peer_health::global().set(peer_health::activity::stopping);
  release_node(st);
  spdlog::info("training {} at {} {} ({} samples trained here, {} of them during rounds{}); "
               "writing the final checkpoint",
               why, st.swarm ? "epoch" : "step", current_step(st), st.samples_trained,
               st.samples_overlapped,
               st.steps_ahead > 0
                 ? fmt::format(", through {} rounds one own step ahead", st.steps_ahead)
                 : std::string());
  if (const auto guesses = st.guess_probe.means(); guesses.scored > 0)
    spdlog::info("steps ahead: on average each went {:.2f} of the swarm's step along it and "
                 "ended {:.2f} of a step off it ({} rounds scored)",
                 guesses.along, guesses.off, guesses.scored);
  // A step ahead taken during the last round is this peer's alone, not the swarm's model.
  take_back_step_ahead(st);
  if (st.outer && overlapping(st)) {
    // The swarm's model is the anchor; steps taken during the last round are this peer's alone.
    torch::NoGradGuard no_grad;
    st.model->parameters().values().copy_(st.outer->anchor());
  }
  try {
    write_sample_grid(st);
  } catch (const work_stopped&) {
    spdlog::warn("final sample grid skipped: a stop signal came while it was sampled");
  } catch (const std::exception& e) {
    spdlog::warn("final sample grid not written: {}", readable_error(e));
  }
  save_final_checkpoint(self);
}

// The peer re-forms the node's set with more trainers: the final checkpoint, which the new set
// starts from, then quit (the peer's down handler starts the new set).
void stop_for_new_set(trainer_pointer self) {
  auto& st = self->state;
  if (st.finishing)
    return;
  st.finishing = true;
  spdlog::info("stopping at {} {} for a new set of trainers; writing a checkpoint",
               st.swarm ? "epoch" : "step", current_step(st));
  take_back_step_ahead(st);
  release_node(st);
  save_final_checkpoint(self);
}

// After a step (alone) or an epoch (swarm): logs, checkpoints, grids, limits.
void after_step(trainer_pointer self, double lr) {
  auto& st = self->state;
  const auto& cfg = st.options.config;
  auto step = current_step(st);
  if (st.options.rank > 0) {
    if (st.node_done)
      self->quit();  // rank 0 writes the final checkpoint and grid
    return;
  }
  // The first line comes early, so that a newcomer sees the pace and the ETA at once.
  const bool first_line_due =
    !st.progress_logged && st.window_steps >= 3 &&
    clock_type::now() - st.window_start >= std::chrono::seconds(3);
  if (step % cfg.train.log_every == 0 || first_line_due)
    log_progress(st, lr);
  // Alone, the node's ranks learned rank 0's decision in a sum; in a swarm rank 0 tells them.
  if (st.node && !st.swarm ? st.node_done : reached_limit(st)) {
    settle_or_finish(self);
    return;
  }
  if (step % cfg.train.checkpoint_every == 0)
    save_checkpoint(self);
  if (cfg.train.sample_every > 0 && step % cfg.train.sample_every == 0) {
    try {
      write_sample_grid(st);
    } catch (const work_stopped&) {
      spdlog::warn("sample grid skipped: a stop signal came while it was sampled");
    }
  }
}

namespace {

// --- a lone peer ---------------------------------------------------------------------------

void train_alone(trainer_pointer self, const training_batch& batch) {
  auto& st = self->state;
  check_injected_faults(st, batch);
  auto step_started = clock_type::now();
  st.model->accumulate(batch);
  if (st.node)
    sum_node_accumulation(*st.node, *st.model);
  auto result = st.model->apply_step();
  if (!std::isfinite(result.loss))
    throw std::runtime_error("loss is not finite at step " + std::to_string(result.step));
  st.progress.step = result.step;
  st.progress.epoch = result.step;
  if (st.node)
    st.node_done = node_ends_here(st);
  if (st.options.rank == 0)  // the process's metrics count the node's steps once
    record_step_metrics(
      st, result, std::chrono::duration<double>(clock_type::now() - step_started).count());
  st.window_samples += result.samples;
  st.window_steps += 1;
  st.window_loss += result.loss;
  after_step(self, result.lr);
}

// --- the behaviour ------------------------------------------------------------------------

// "DiT", "router", "Stable Diffusion UNet", "Stable Diffusion LoRA (rank 8)": for the logs.
std::string trained_model_name(const model_trainer& model) {
  const auto description = model.describe();
  const auto kind = description.at("model.kind");
  if (kind == "dit")
    return description.count("model.latent") != 0 ? "latent DiT" : "DiT";
  if (kind == "stable-diffusion")
    return description.at("model.training") == "lora"
             ? "Stable Diffusion LoRA (rank " + description.at("model.lora_rank") + ")"
             : "Stable Diffusion UNet";
  return kind;
}

void on_batch(trainer_pointer self, std::shared_ptr<const training_batch> batch) {
  auto& st = self->state;
  st.progress.data_epoch = batch->epoch_after;
  st.progress.data_position = batch->position_after;
  self->send(st.loader, credit_atom_v, int32_t{1});
  // The peer's samples: with several trainers each has a slice of the node's batch.
  st.samples_trained += batch->node_count > 0 ? batch->node_count : batch->count;
  if (st.swarm)
    train_in_swarm(self, *batch);
  else
    train_alone(self, *batch);
}

// A batch, or the trainer ends with an error (its supervisor restarts it).
void train_batch(trainer_pointer self, std::shared_ptr<const training_batch> batch) {
  auto& st = self->state;
  try {
    on_batch(self, std::move(batch));
  } catch (const node_collective_error& e) {
    // Another rank left the node's set (failed, or rank 0 stopped): the peer ends this set.
    spdlog::warn("trainer {} of {} ends at step {}: {}", st.options.rank, st.options.ranks,
                 current_step(st) + 1, e.what());
    self->quit(make_error(errc::training_failed, e.what()));
  } catch (const std::exception& e) {
    self->quit(step_failure(st, e));
  }
}

trainer_actor::behavior_type trainer(trainer_pointer self, trainer_options options) {
  auto& st = self->state;
  st.options = std::move(options);
  st.swarm = (st.options.progress != nullptr && st.options.averager != nullptr) ||
             st.options.follows_swarm;
  auto settings = make_trainer_settings(st.options.config);
  settings.noise_seed = st.options.noise_seed;
  settings.device = parse_training_device(st.options.config.run.device_of_rank(st.options.rank));
  {
    // Initial weights come from LibTorch's global generator (seeded with run.seed while the
    // model is built): the trainers of one peer, built at once, would interleave its draws.
    static std::mutex global_generator;
    std::lock_guard<std::mutex> lock(global_generator);
    st.model = make_model_trainer(st.options.config, settings);
  }
  if (st.swarm && averaging_mode(st) == "diloco")
    st.outer = std::make_unique<outer_nesterov>(st.model->parameters().values(),
                                                st.options.config.train.outer_lr,
                                                st.options.config.train.outer_momentum);
  if (st.options.rank == 0)
    restore_latest(st);
  if (st.options.ranks > 1) {
    // Blocks this trainer's thread until the set has met (never CAF's scheduler: detached).
    // NCCL where every rank is one of this peer's GPUs; a set with an attached trainer (more
    // ranks than run.trainers, or this one attached) sums host copies with Gloo on every rank.
    node_reducer_options node_options{st.options.rank, st.options.ranks};
    const auto& run = st.options.config.run;
    node_options.nccl = !run.devices.empty() && st.options.ranks == run.trainers &&
                        !st.options.follows_swarm;
    st.node = std::make_unique<node_reducer>(st.options.rendezvous, node_options);
    share_node_state(st);
  }
  if (st.options.rank == 0) {
    st.metrics.step.set(static_cast<double>(st.progress.step));
    spdlog::info("trainer ready: {} with {} trained parameters in {}, starting at {} {}{}",
                 trained_model_name(*st.model), st.model->parameters().size(),
                 st.options.config.train.precision, st.swarm ? "epoch" : "step",
                 current_step(st),
                 st.options.ranks > 1
                   ? fmt::format(" ({} trainers in this peer, reduced with {})", st.options.ranks,
                                 st.node && st.node->uses_nccl() ? "NCCL" : "Gloo")
                   : std::string());
  }
  if (st.swarm && st.options.rank == 0) {
    if (!st.options.config.network.initial_peers.empty())
      st.phase = swarm_phase::joining;
    st.join_deadline = clock_type::now() + join_wait(st.options.config);
    refresh_state_digest(st);
    self->send(st.options.progress, attach_atom_v, progress_listener{self});
    report_progress(self);
    serve_state(self);
  }
  if (reached_limit(st)) {
    if (st.options.rank == 0)
      spdlog::info("step limit {} already reached; nothing to train",
                   st.options.config.train.steps);
    self->quit();
  }
  return {
    [=](const batch_message& msg) {
      auto& st = self->state;
      if (st.finishing || msg.batch->loader_generation != st.loader_generation)
        return;  // a stale batch from a replaced loader, or we are done
      if (st.swarm && st.options.rank > 0) {
        follow_with_batch(self, msg.batch);
        return;
      }
      // During an overlapped round too, each batch trains in its own mailbox round (drain):
      // CAF visits a round's urgent messages first but then every normal one it fetched, so
      // the round's average would wait behind up to data.prefetch batches (about 2 s at 4 peers on
      // slow links, every one of them trained on the guessed weights).
      if (batches_wait(st) || !st.waiting_batches.empty() ||
          st.phase == swarm_phase::averaging) {
        st.waiting_batches.push_back(msg.batch);  // in order, after those already waiting
        drain_waiting_batches(self);
        return;
      }
      train_batch(self, msg.batch);
    },
    [=](drain_atom) {
      auto& st = self->state;
      st.drain_pending = false;
      if (batches_wait(st) || st.finishing || st.waiting_batches.empty())
        return;
      auto batch = std::move(st.waiting_batches.front());
      st.waiting_batches.pop_front();
      if (batch->loader_generation == st.loader_generation)
        train_batch(self, std::move(batch));
      drain_waiting_batches(self);
    },
    [=](attach_atom, data_loader_actor loader, uint64_t generation) {
      auto& st = self->state;
      st.loader = std::move(loader);
      st.loader_generation = generation;
      st.waiting_batches.clear();
      self->send(st.loader, fetch_atom_v, caf::actor_cast<batch_sink_actor>(self),
                 st.progress.data_epoch, st.progress.data_position,
                 static_cast<int32_t>(st.options.config.data.prefetch));
      st.window_start = clock_type::now();
      st.last_batch = clock_type::now();
      peer_health::global().set(peer_health::activity::training);
    },
    [=](attach_atom, checkpointer_actor checkpointer) {
      self->state.options.checkpointer = std::move(checkpointer);
    },
    [=](average_atom, int64_t epoch) {
      auto& st = self->state;
      if (epoch != st.progress.epoch)
        return;
      st.ready_epoch = epoch;
      start_round(self);
    },
    [=](const swarm_progress& view) {
      auto& st = self->state;
      st.swarm_view = view;
      consider_pending_state(self);
      if (st.phase == swarm_phase::joining)
        finish_joining(self, view);
      if (view.swarm_size <= 1)
        st.resync_needed = false;  // nobody to differ from: this peer's state is the swarm's
      if (st.phase == swarm_phase::missed &&
          (view.swarm_size <= 1 || clock_type::now() >= st.missed_deadline)) {
        spdlog::warn("epoch {}: the swarm did not move past the round it formed without this "
                     "peer; training on",
                     st.progress.epoch);
        st.phase = swarm_phase::training;
        st.missed_expired = true;
      }
      if (st.resync_needed && view.keep_own_state) {
        spdlog::info("epoch {}: every peer stepped alone in the last round; this one has the "
                     "lowest id, so its state is the swarm's from now on",
                     st.progress.epoch);
        st.resync_needed = false;
        report_progress(self);
      }
      // Remembered: the trainer may be in a round now; the download follows the round.
      st.agreeing_servers = view.diverged ? view.agreeing_servers : decltype(st.agreeing_servers){};
      if (st.phase == swarm_phase::settling) {
        continue_settling(self, view);
        return;
      }
      if (view.max_epoch > st.progress.epoch)
        catch_up(self, view.max_epoch, "the swarm is ahead", view.state_servers);
      else if (st.resync_needed)
        catch_up(self, st.progress.epoch, "the last round had no partner", view.state_servers);
      else if (!st.agreeing_servers.empty() && st.phase != swarm_phase::averaging &&
               st.phase != swarm_phase::downloading)
        catch_up(self, st.progress.epoch, "the weights differ from the swarm's",
                 std::exchange(st.agreeing_servers, {}));
      drain_waiting_batches(self);
    },
    [=](stop_atom) -> caf::result<int64_t> {
      auto& st = self->state;
      auto promise = self->make_response_promise<int64_t>();
      if (st.finishing) {
        promise.deliver(current_step(st));
        return promise;
      }
      st.finishing = true;
      if (st.options.rank > 0) {
        promise.deliver(current_step(st));  // rank 0 checkpoints the node's state
        self->quit();
        return promise;
      }
      spdlog::info("stopping at {} {}; writing a checkpoint", st.swarm ? "epoch" : "step",
                   current_step(st));
      release_node(st);
      st.stop_promise = promise;
      save_final_checkpoint(self);
      return promise;
    },
    [=](discard_atom, uint64_t round_id, const std::string& why) {
      if (!refuse_remote(self, "trainer", "discard"))
        discard_round(self, round_id, why);
    },
    [=](restart_atom) {
      auto& st = self->state;
      // A swarm's epoch in progress ends with its round first: its accumulated gradients are
      // in no checkpoint. A lone peer is between two steps here.
      const bool in_epoch = st.phase == swarm_phase::averaging ||
                            (st.phase == swarm_phase::training && st.epoch_samples > 0);
      if (st.swarm && in_epoch)
        st.stop_at_epoch_end = true;
      else
        stop_for_new_set(self);
    },
    [=](tick_atom) { drain_waiting_batches(self); },
    [=](retry_atom) {
      // Ticks while a failed checkpoint waits for its next attempt (runtime/actor_ticks.hpp).
      auto& st = self->state;
      if (!st.pending_checkpoint || st.checkpoint_in_flight)
        return;
      if (clock_type::now() >= st.next_checkpoint_attempt) {
        attempt_checkpoint(self);
        return;
      }
      self->delayed_send(self, tick_towards(st.next_checkpoint_attempt, clock_type::now()),
                         retry_atom_v);
    },
  };
}

} // namespace

} // namespace ddactor::trainer_internal

namespace ddactor {

trainer_actor spawn_trainer(caf::actor_system& system, trainer_options options) {
  return system.spawn<caf::detached>(trainer_internal::trainer, std::move(options));
}

} // namespace ddactor
