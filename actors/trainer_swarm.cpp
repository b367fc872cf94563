// The trainer as a swarm peer (rank 0 of its node): an epoch's batches, its round and the
// round's outcome, a missed round, catching up by downloading the swarm's state once a quorum
// vouches for it, settling the final weights, serving this peer's state and reporting progress.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <exception>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "actors/state_download.hpp"
#include "actors/trainer_state.hpp"
#include "models/device_transfer.hpp"
#include "models/node_training.hpp"
#include "models/readable_error.hpp"
#include "models/shared_state.hpp"
#include "monitoring/ddactor_metrics.hpp"
#include "monitoring/peer_health.hpp"
#include "runtime/errors.hpp"
#include "runtime/state_agreement.hpp"
#include "runtime/state_quorum.hpp"

namespace ddactor::trainer_internal {

namespace {

// Smoothing of this peer's samples/s as reported to the swarm.
constexpr double rate_smoothing = 0.3;

// Waits between failed state downloads: from the first to the largest.
constexpr std::chrono::milliseconds first_catch_up_backoff{250};
constexpr std::chrono::milliseconds max_catch_up_backoff{8000};

// How long peers that hold the final weights wait for the others to reach and agree on them:
// enough for two agreement checks, a download and the reports that follow.
std::chrono::milliseconds settle_wait(const run_config& config) {
  return std::chrono::milliseconds(
    static_cast<int64_t>(1000 * std::max(3.0, 10 * config.network.gossip_interval)));
}

// debug.byzantine = "forged_state" (tests of the state quorum): the epoch this peer claims and
// serves its forged state as lies this far ahead of its own.
int64_t forged_epoch_offset(const trainer_state& st) {
  const auto& debug = st.options.config.debug;
  return debug.allow_byzantine && debug.byzantine == "forged_state" ? 100000 : 0;
}

// The epoch and weight digest of a downloaded state (0 where digests are not computed): applied
// to learn them, then the weights are put back as they were.
std::pair<int64_t, uint64_t> inspect_state(trainer_state& st, const state_download_result& result) {
  const auto before = encode_shared_state(*st.model, st.progress.epoch, st.outer.get(), "none");
  const auto digest_before = st.state_digest;
  auto epoch = restore_shared_state(*result.bytes, *st.model, st.outer.get());
  refresh_state_digest(st);
  const auto digest = st.state_digest;
  restore_shared_state(before, *st.model, st.outer.get());
  st.state_digest = digest_before;
  return {epoch, digest};
}

// Another trainer of this peer's node is gone: rank 0 ends too (the peer re-forms the set).
void quit_without_the_node(trainer_pointer self, const node_collective_error& e) {
  auto& st = self->state;
  spdlog::warn("trainer 0 of {} ends at epoch {}: {}", st.options.ranks, st.progress.epoch,
               e.what());
  self->quit(make_error(errc::training_failed, e.what()));
}

void back_off_catching_up(trainer_state& st) {
  st.catch_up_backoff = std::clamp(2 * st.catch_up_backoff, first_catch_up_backoff,
                                   max_catch_up_backoff);
  st.catch_up_not_before = clock_type::now() + st.catch_up_backoff;
}

// How long a downloaded state waits for a quorum of peers to vouch for it.
std::chrono::milliseconds vouch_wait(const run_config& config) {
  return std::chrono::milliseconds(
    static_cast<int64_t>(std::max(2.0, 4 * config.network.gossip_interval) * 1000));
}

} // namespace

// averaging.overlap in gradients or DiLoCo mode ("auto": in DiLoCo mode, and in gradients mode
// where the peer steps ahead, without which the next epoch's gradients are one update old):
// batches train into the next epoch while a round runs. (Averaging parameters replaces the
// weights that local steps would change.)
bool overlapping(const trainer_state& st) {
  const auto& mode = averaging_mode(st);
  const auto& averaging = st.options.config.averaging;
  switch (averaging.overlap) {
    case overlap_policy::on: return mode == "gradients" || mode == "diloco";
    case overlap_policy::automatic:
      return mode == "diloco" || (mode == "gradients" && averaging.step_ahead && !st.node);
    case overlap_policy::off: break;
  }
  return false;
}

// Overlap in gradients mode trains the next epoch while this one's round runs. On the weights
// before the round's step, its gradients would be one update old (1.40x validation loss in
// ddactor_staleness_bench); so the peer steps ahead with its own gradient, the best guess of the
// swarm's average it has, and trains on those weights. Its share's noise makes it larger than
// the average; whatever makes every peer's guess fall short of the swarm's step alike is a bias
// their guesses share, which does not cancel in the mean as their noise does: so it is clipped
// as if its norm were the last average's, and AdamW's second moment takes only the peer's
// share of its square (model_trainer::apply_guess; ddactor_staleness_bench, 4 peers, 4 seeds:
// 1.032x -> 1.016x validation loss). The step is taken back before the average is applied, so
// every peer applies the same updates to the same state. Not with several trainers (each would
// have to step alike) nor an overflowed fp16 gradient (zeros).
void step_ahead(trainer_state& st, std::span<const float> own_gradient) {
  if (averaging_mode(st) != "gradients" || !overlapping(st) ||
      !st.options.config.averaging.step_ahead || st.node || st.model->gradient_overflowed() ||
      st.swarm_view.swarm_size <= 1)
    return;
  st.before_step_ahead = copy_shared_state(*st.model, st.outer.get());
  st.guess_probe.take_start(st.model->parameters().values());
  // The samples the round averages: the swarm's estimate for the epoch, between its target and
  // what the swarm's peers can train in one (each at most the target: batches_wait), so that
  // other peers' claims of samples cannot make the own share vanish.
  const auto target = static_cast<double>(std::max<int64_t>(
    st.options.config.train.target_batch_size, 1));
  const double averaged_samples = std::max(
    std::clamp(st.swarm_view.epoch_samples, target,
               target * std::max(st.swarm_view.swarm_size, 1)),
    static_cast<double>(st.round_samples));
  st.model->apply_guess(own_gradient, st.last_average_norm,
                        static_cast<double>(st.round_samples) / averaged_samples);
  st.guess_probe.take_guess(st.model->parameters().values());
  st.metrics.steps_ahead.inc();
  ++st.steps_ahead;
}

// Puts back the state from before step_ahead (the round ended, or the run ends during it) and
// returns it: it is the state the round's average applies to.
std::optional<shared_state_copy> take_back_step_ahead(trainer_state& st) {
  auto before = std::exchange(st.before_step_ahead, std::nullopt);
  if (before)
    restore_shared_state(*before, *st.model, st.outer.get());
  return before;
}

namespace {

// How close the step ahead came to the swarm's step just applied (step_ahead_probe.hpp); a
// round that applied no swarm step (alone, failed, a discard went further back) scores nothing.
void score_step_ahead(trainer_state& st, bool swarm_step) {
  if (!swarm_step) {
    st.guess_probe.drop();
    return;
  }
  const auto score = st.guess_probe.score(st.model->parameters().values());
  if (!score)
    return;
  st.metrics.guess_along.set(score->along);
  st.metrics.guess_off.set(score->off);
  spdlog::debug("epoch {}: the step ahead went {:.3f} of the swarm's step along it, ended {:.3f} "
                "of a step off it",
                st.progress.epoch, score->along, score->off);
}

} // namespace

// Batches wait in order while the weights are about to be replaced, or the swarm is not found
// yet. During a round, an overlapping peer trains at most what it put into the round (its share
// of an epoch, never more than train.target_batch_size): when the round ends, the swarm holds
// about one target batch of the next epoch, whose round then starts at once. Epochs stay the
// size the user chose, as hivemind's delayed step keeps them; a round slower than an epoch's
// compute leaves the peer idle for the rest (until 2026-12-07 the limit was twice the share:
// epochs grew to 1.5-1.75x the target, fewer and larger steps, 1.043x validation loss at equal
// samples in ddactor_swarm_convergence_bench). A larger target fills a slow round instead.
bool batches_wait(const trainer_state& st) {
  const int64_t overlap_limit = std::min<int64_t>(
    st.round_samples, std::max<int64_t>(st.options.config.train.target_batch_size, 1));
  switch (st.phase) {
    case swarm_phase::training: return clock_type::now() < st.share_held_until;
    case swarm_phase::averaging: return !overlapping(st) || st.epoch_samples >= overlap_limit;
    case swarm_phase::joining:
    case swarm_phase::missed:
    case swarm_phase::downloading:
    case swarm_phase::settling: return true;
  }
  return true;
}

// The last epoch is done. Where the swarm compares weights by digest, its peers settle first: a
// peer that diverged in the last epochs (a missed round, split groups) has had no later epoch to
// be repaired in, so it takes the swarm's final state now instead of writing its own, and the
// peers holding it stay (bounded by settle_wait) to serve it. A time limit ends each peer where
// it is.
void settle_or_finish(trainer_pointer self) {
  auto& st = self->state;
  const auto steps = st.options.config.train.steps;
  if (!st.swarm || st.state_digest == 0 || st.swarm_view.swarm_size <= 1 || steps <= 0 ||
      current_step(st) < steps) {
    finish(self, "finished");
    return;
  }
  st.phase = swarm_phase::settling;
  if (st.settle_deadline != clock_type::time_point{})
    return;  // settling again after a download: the first deadline holds
  st.settle_deadline = clock_type::now() + settle_wait(st.options.config);
  spdlog::info("epoch {}: the last one; comparing the final weights with the other peers' (at "
               "most {:.0f} s)",
               st.progress.epoch,
               std::chrono::duration<double>(settle_wait(st.options.config)).count());
}

// While settling, on each view: finish once the swarm agrees on our final weights, take the
// final state most peers hold where ours differs, or finish at the deadline. Never a jump past
// the last epoch: a peer ahead has more train.steps than this run, or lies.
void continue_settling(trainer_pointer self, const swarm_progress& view) {
  auto& st = self->state;
  if (view.settled_epoch == st.progress.epoch && view.settled_digest == st.state_digest) {
    finish(self, "finished");
  } else if (!st.agreeing_servers.empty() && clock_type::now() < st.settle_deadline) {
    catch_up(self, st.progress.epoch, "the final weights differ from the swarm's",
             std::exchange(st.agreeing_servers, {}));
  } else if (clock_type::now() >= st.settle_deadline || view.swarm_size <= 1) {
    spdlog::warn("epoch {}: the peers did not all report these final weights within {:.0f} s; "
                 "writing them as they are",
                 st.progress.epoch,
                 std::chrono::duration<double>(settle_wait(st.options.config)).count());
    averaging_metrics(global_metrics()).unsettled_finishes.inc();
    finish(self, "finished");
  }
}

// `in_flight`: samples of the batch about to be trained, counted before the work. The swarm's
// estimate then includes every peer's batch in progress, so an epoch ends at most one batch past
// train.target_batch_size, not one batch per peer.
void report_progress(trainer_pointer self, int64_t in_flight) {
  auto& st = self->state;
  // During a round the epoch's samples still count (a peer whose view lags has yet to see the
  // epoch ready); the next epoch's, trained meanwhile, are reported once the round is applied.
  self->send(st.options.progress, progress_atom_v, st.progress.epoch + forged_epoch_offset(st),
             st.round_samples + st.epoch_samples + in_flight, st.samples_per_second,
             st.state_digest, st.resync_needed, st.progress.epoch != st.downloaded_epoch);
}

// After every change of the shared weights (a round, a download, a restore); about 0.6 s per GB
// on two cores, so only where split groups can be repaired (0: no digest).
void refresh_state_digest(trainer_state& st) {
  const auto& averaging = st.options.config.averaging;
  if (!split_repair_possible(averaging.state_compression, averaging.state_every))
    return;
  // DiLoCo: the anchor is what every peer shares (its weights add local steps to it).
  const auto weights = on_host(st.outer ? st.outer->anchor() : st.model->parameters().values());
  st.state_digest = state_digest_of(
    {weights.data_ptr<float>(), static_cast<size_t>(weights.numel())});
}

// A copy of the shared state for peers that join late (every averaging.state_every epochs).
void serve_state(trainer_pointer self) {
  auto& st = self->state;
  if (!st.options.state_server)
    return;
  const int64_t epoch = st.progress.epoch + forged_epoch_offset(st);
  const bool forge = forged_epoch_offset(st) != 0;
  torch::NoGradGuard no_grad;
  if (forge)  // debug.byzantine = "forged_state": negated weights (negation is exact, undone below)
    for (auto& p : st.model->module().parameters())
      p.neg_();
  // DiLoCo with overlap: the weights served are the anchor, which every peer shares, not the
  // anchor plus this peer's local steps since (they are this peer's alone).
  torch::Tensor own_weights;
  auto weights = st.model->parameters().values();
  if (st.outer && overlapping(st)) {
    own_weights = weights.detach().clone();
    weights.copy_(st.outer->anchor());
  }
  auto bytes = std::make_shared<const std::vector<char>>(encode_shared_state(
    *st.model, epoch, st.outer.get(), st.options.config.averaging.state_compression));
  if (own_weights.defined())
    weights.copy_(own_weights);
  if (forge)
    for (auto& p : st.model->module().parameters())
      p.neg_();
  // A request, not an anonymous send: the state server takes states from this process only.
  self->request(st.options.state_server, std::chrono::seconds(60), caf::put_atom_v,
                shared_bytes(bytes), epoch, st.options.swarm_id)
    .then([](const state_manifest&) {},
          [](const caf::error& err) {
            spdlog::warn("the state server refused this epoch's state: {}", to_string(err));
          });
}

// How long a peer started with initial_peers waits to hear from the swarm before it trains alone.
std::chrono::milliseconds join_wait(const run_config& config) {
  const double seconds = std::max(10.0, 3 * config.network.connect_timeout);
  return std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000));
}

// A downloaded state is taken once a quorum of peers vouches for its epoch and weights
// (runtime/state_quorum.hpp), and refused (never downloaded again) when none does in time.
void consider_pending_state(trainer_pointer self) {
  auto& st = self->state;
  if (!st.pending_state)
    return;
  auto& pending = *st.pending_state;
  const bool vouched = may_take(st.swarm_view.vouched, pending.epoch, pending.digest);
  if (!vouched && clock_type::now() < pending.until)
    return;
  const auto result = std::move(pending.result);
  const auto started = pending.started;
  st.pending_state.reset();
  st.phase = st.phase_before_download;
  try {
    if (!vouched) {
      st.refused_state_digests.insert(result.manifest.digest);
      averaging_metrics(global_metrics()).unvouched_states.inc();
      throw std::runtime_error("no quorum of peers vouches for its epoch " +
                               std::to_string(result.manifest.epoch) +
                               " and weights (averaging.state_quorum " +
                               std::to_string(st.swarm_view.vouched.required) + ")");
    }
    auto epoch = restore_shared_state(*result.bytes, *st.model, st.outer.get());
    st.model->discard_accumulation();
    st.sent_parameters = torch::Tensor();
    st.round_backup.reset();  // what went before the download is gone
    st.before_step_ahead.reset();   // and a step ahead of it
    st.pending_discard.reset();
    // From further back than the epoch before, members matching this epoch did not count
    // this peer, so it does not lead it (runtime/matchmaking_rules.hpp); from the epoch before
    // (a missed round) or this one (a repair), they did, and it may.
    if (epoch > st.progress.epoch + 1)
      st.downloaded_epoch = epoch;
    st.progress.epoch = epoch;
    st.progress.step = st.model->step();
    if (st.node) {
      tell_node(st, node_command::take_state);
      share_node_state(st);
    }
    refresh_state_digest(st);
    st.epoch_samples = 0;
    st.epoch_loss = 0;
    st.epoch_batches = 0;
    double seconds = std::chrono::duration<double>(clock_type::now() - started).count();
    spdlog::info("downloaded the state of epoch {} ({:.1f} MB in {:.2f} s, {} resumes)", epoch,
                 result.bytes->size() / 1e6, seconds, result.resumes);
    st.resync_needed = false;
    st.catch_up_backoff = std::chrono::milliseconds(0);
    st.phase = swarm_phase::training;  // at the swarm's epoch: joined, nothing missed
    report_progress(self);
    serve_state(self);
    if (reached_limit(st))
      settle_or_finish(self);  // the swarm's final state: compared, then written
  } catch (const node_collective_error& e) {
    quit_without_the_node(self, e);
    return;
  } catch (const std::exception& e) {
    spdlog::warn("downloaded state refused: {}", e.what());
    back_off_catching_up(st);
  }
  peer_health::global().set(peer_health::activity::training);
  drain_waiting_batches(self);
}

// Downloads the swarm's state from `candidates` (best first), then resumes.
void catch_up(trainer_pointer self, int64_t min_epoch, const char* why,
              std::vector<state_server_remote> candidates) {
  auto& st = self->state;
  if (st.phase == swarm_phase::downloading || st.phase == swarm_phase::averaging ||
      st.finishing || candidates.empty() || clock_type::now() < st.catch_up_not_before)
    return;
  st.phase_before_download = st.phase;
  st.phase = swarm_phase::downloading;
  peer_health::global().set(peer_health::activity::downloading_state, why);
  spdlog::info("epoch {}: {}; downloading the swarm's state (epoch >= {})", st.progress.epoch, why,
               min_epoch);
  state_download_options options;
  options.candidates = std::move(candidates);
  options.swarm_id = st.options.swarm_id;
  options.min_epoch = min_epoch;
  options.refused_digests = st.refused_state_digests;
  auto timeout = std::chrono::milliseconds(
    static_cast<int64_t>(st.options.config.averaging.request_timeout * 1000));
  options.request_timeout = timeout;
  options.deadline = 30 * timeout;
  auto download = spawn_state_download(self->system(), options);
  auto started = clock_type::now();
  self->request(download, options.deadline + std::chrono::seconds(5), caf::get_atom_v)
    .then(
      [=](const state_download_result& result) {
        auto& st = self->state;
        try {
          auto [epoch, digest] = inspect_state(st, result);
          // The peers' reports of this state may trail the download by a moment.
          st.pending_state = pending_download{result, epoch, digest, started,
                                              clock_type::now() + vouch_wait(st.options.config)};
          consider_pending_state(self);
        } catch (const std::exception& e) {
          st.phase = st.phase_before_download;
          spdlog::warn("downloaded state refused: {}", e.what());
          back_off_catching_up(st);
          peer_health::global().set(peer_health::activity::training);
          drain_waiting_batches(self);
        }
      },
      [=](const caf::error& err) {
        auto& st = self->state;
        st.phase = st.phase_before_download;
        back_off_catching_up(st);
        spdlog::warn("state download failed: {}; next attempt in {} ms at the earliest",
                     self->system().render(err), st.catch_up_backoff.count());
        peer_health::global().set(peer_health::activity::training);
        drain_waiting_batches(self);
      });
}

// One batch of an epoch: accumulate the gradient, or take a local step.
void train_in_swarm(trainer_pointer self, const training_batch& batch) {
  auto& st = self->state;
  check_injected_faults(st, batch);
  // With several trainers the swarm sees the node: its samples are those of all its ranks.
  const int64_t samples = batch.node_count > 0 ? batch.node_count : batch.count;
  report_progress(self, samples);
  auto step_started = clock_type::now();
  tell_node(st, node_command::train_batch);
  const auto [loss, local_step] = train_node_batch(st, batch);
  if (local_step) {
    st.progress.step = local_step->step;
    record_step_metrics(
      st, *local_step, std::chrono::duration<double>(clock_type::now() - step_started).count());
  }
  if (st.phase == swarm_phase::averaging) {
    st.metrics.overlapped_samples.inc(samples);
    st.window_overlapped += samples;
    st.samples_overlapped += samples;
  }
  if (!std::isfinite(loss))
    throw std::runtime_error("loss is not finite in epoch " + std::to_string(st.progress.epoch));
  auto now = clock_type::now();
  double seconds = std::chrono::duration<double>(now - st.last_batch).count();
  st.last_batch = now;
  if (seconds > 0) {
    double rate = static_cast<double>(samples) / seconds;
    st.samples_per_second = st.samples_per_second == 0
                              ? rate
                              : (1 - rate_smoothing) * st.samples_per_second +
                                  rate_smoothing * rate;
  }
  st.epoch_samples += samples;
  st.epoch_loss += loss;
  st.epoch_batches += 1;
  st.window_samples += samples;
  report_progress(self);
  if (st.ready_epoch == st.progress.epoch)
    start_round(self);
}

// A joiner learns where the swarm is before its first batch: it may be far ahead, and steps taken
// alone meanwhile would only be thrown away (or, worse, averaged with the swarm's).
void finish_joining(trainer_pointer self, const swarm_progress& view) {
  auto& st = self->state;
  const bool heard = view.swarm_size > 1 && view.peers_reported > 0;
  if (!heard && clock_type::now() < st.join_deadline)
    return;
  st.phase = swarm_phase::training;
  if (heard)
    spdlog::info("joined a swarm of {} peers at epoch {} (this peer: epoch {})", view.swarm_size,
                 view.max_epoch, st.progress.epoch);
  else
    spdlog::warn("no peer of network.initial_peers answered within {:.0f} s; training alone "
                 "until one does",
                 std::chrono::duration<double>(join_wait(st.options.config)).count());
}

// Batches that arrived during a round or a download, one per message to itself: the ready
// signal of the new epoch (urgent) overtakes the next one, so the queue cannot push the epoch
// past train.target_batch_size (it did by the prefetch depth when drained in one go).
void drain_waiting_batches(trainer_pointer self) {
  auto& st = self->state;
  if (st.drain_pending || batches_wait(st) || st.finishing || st.waiting_batches.empty())
    return;
  st.drain_pending = true;
  self->send(self, drain_atom_v);
}

namespace {

// After an overlapped round: where this peer already trained its share of the new epoch, the
// others, who applied the same round at about the same time, most likely did too, and the swarm
// holds about a target batch that their reports have yet to tell. Another batch started now
// would overshoot the epoch by a batch per peer (epochs of 192 at a target of 128 with one
// batch of 32 per peer, ddactor_swarm_convergence_bench). So batches wait for the round to start
// (the progress actor's urgent average) or for as long as the round took, at most two report
// intervals (a peer reports at least every 0.25 s): a swarm that falls short trains on.
void hold_for_the_others_shares(trainer_pointer self, int64_t share, double round_seconds) {
  auto& st = self->state;
  if (!overlapping(st) || share <= 0 || st.epoch_samples < share ||
      st.swarm_view.swarm_size <= 1)
    return;
  const auto hold = std::chrono::duration_cast<clock_type::duration>(
    std::chrono::duration<double>(std::clamp(round_seconds, 0.0, 0.5)));
  st.share_held_until = clock_type::now() + hold;
  self->delayed_send(self, hold, tick_atom_v);
}

// `before_round`: the state the round applies to, when a copy of it exists (step_ahead's).
void apply_outcome(trainer_pointer self, const average_outcome& outcome,
                   std::optional<shared_state_copy> before_round) {
  auto& st = self->state;
  bool scores_step_ahead = before_round.has_value() && outcome.averaged();
  if (auto discard = std::exchange(st.pending_discard, std::nullopt)) {
    discard_round(self, discard->first, discard->second);
    before_round.reset();  // the state went further back
    scores_step_ahead = false;
  }
  // Kept until the next round, while an audit may still prove this one poisoned.
  st.round_backup.reset();
  if (outcome.averaged() && outcome.may_be_discarded) {
    const auto started = clock_type::now();
    st.round_backup = applied_round_backup{
      outcome.round_id, before_round ? std::move(*before_round)
                                     : copy_shared_state(*st.model, st.outer.get())};
    spdlog::debug("round {:016x}: the state from before it kept ({:.1f} MB in {:.3f} s)",
                  outcome.round_id, static_cast<double>(st.round_backup->state.bytes()) / 1e6,
                  std::chrono::duration<double>(clock_type::now() - started).count());
  }
  const auto& values = *outcome.values;
  const auto& mode = averaging_mode(st);
  double lr = st.model->learning_rate(st.progress.step);
  auto step_started = clock_type::now();
  if (st.node) {
    tell_node(st, node_command::apply_update);
    auto update = torch::tensor(values, torch::kFloat32);
    st.node->broadcast_(update, 0);
  }
  if (auto result = apply_round_values(st, values)) {
    if (outcome.averaged() && !result->skipped && std::isfinite(result->grad_norm))
      st.last_average_norm = result->grad_norm;
    score_step_ahead(st, scores_step_ahead && !result->skipped);
    result->loss = st.round_loss;
    result->samples = st.round_samples;
    record_step_metrics(
      st, *result, std::chrono::duration<double>(clock_type::now() - step_started).count());
    st.progress.step = result->step;
    lr = result->lr;
  }
  refresh_state_digest(st);
  st.last_round = {outcome.group_size, outcome.seconds, outcome.averaged(), outcome.bytes_sent,
                   outcome.bytes_received};
  // Stepping alone while others exist means our state now differs from theirs, and stays so
  // (later rounds average the same gradients, or pseudo-gradients, onto different weights; an
  // average of parameters heals itself) until a download succeeds. Where digests are compared,
  // that comparison finds the difference, and the swarm's rule (most holders, ties to the lowest
  // id) picks the state to take even when every peer stepped alone; a flag could not, since each
  // peer would wait for another to serve.
  if (!outcome.averaged() && st.swarm_view.swarm_size > 1 && mode != "parameters" &&
      st.state_digest == 0)
    st.resync_needed = true;
  st.window_loss += st.round_loss;
  st.window_steps += 1;
  st.progress.epoch += 1;
  hold_for_the_others_shares(self, st.round_samples, outcome.seconds);
  st.round_samples = 0;
  st.round_loss = 0;
  report_progress(self);
  // Served even while resyncing: when every peer stepped alone, one of them must serve.
  if (st.progress.epoch % st.options.config.averaging.state_every == 0)
    serve_state(self);
  after_step(self, lr);
  if (st.stop_at_epoch_end)
    stop_for_new_set(self);  // the peer re-forms the set: it starts from this epoch
}

// The swarm averaged this epoch without us: our gradient has no place in it. Applying it alone
// would set this peer apart until a repair; instead it waits for the swarm's next state (the
// progress actor reports the swarm ahead as soon as one peer is) and trains on from there.
void miss_round(trainer_pointer self) {
  auto& st = self->state;
  st.phase = swarm_phase::missed;
  st.sent_parameters = torch::Tensor();  // nothing comes to apply: the local steps stay as they are
  st.round_samples = 0;
  st.round_loss = 0;
  const auto& averaging = st.options.config.averaging;
  st.missed_deadline =
    clock_type::now() + std::chrono::milliseconds(static_cast<int64_t>(
                          1000 * (2 * averaging.matchmaking_time + averaging.allreduce_timeout)));
  peer_health::global().set(peer_health::activity::training);
  report_progress(self);
  if (st.stop_at_epoch_end) {
    stop_for_new_set(self);  // nothing accumulated is left to lose
    return;
  }
  if (st.swarm_view.max_epoch > st.progress.epoch)
    catch_up(self, st.swarm_view.max_epoch, "the swarm is ahead", st.swarm_view.state_servers);
}

} // namespace

// An audit proved that a reducer of round `round_id` lied. While that round is the last this
// peer applied, the peer goes back to its state from before it (weights, optimizer, EMA,
// DiLoCo's outer state), as every member that checked the proof does, so that they stay
// identical; the epoch stays counted, the samples trained since stay accumulated (in parameters
// and DiLoCo modes the local steps since are lost). After a later round it is too late here:
// the digests then show this peer apart from the members that went back, and the swarm's split
// repair settles which state the swarm keeps.
void discard_round(trainer_pointer self, uint64_t round_id, const std::string& why) {
  auto& st = self->state;
  if (round_id == st.poisoned_round)
    return;  // another audit of the same round
  averaging_metrics metrics(global_metrics());
  const bool applied_last = st.round_backup && st.round_backup->round_id == round_id;
  if (!applied_last) {
    st.poisoned_round = round_id;
    spdlog::warn("round {:016x} is poisoned ({}), but a later round was applied since: kept",
                 round_id, why);
    metrics.discarded_rounds.with({"too_late"}).inc();
    return;
  }
  if (st.phase == swarm_phase::averaging) {
    st.pending_discard.emplace(round_id, why);  // before the next outcome is applied
    return;
  }
  st.poisoned_round = round_id;
  const auto backup = std::move(*st.round_backup);
  st.round_backup.reset();
  try {
    restore_shared_state(backup.state, *st.model, st.outer.get());
    st.progress.step = st.model->step();
    st.sent_parameters = torch::Tensor();
    if (st.node) {
      tell_node(st, node_command::roll_back);
      share_node_state(st);
    }
  } catch (const node_collective_error& e) {
    quit_without_the_node(self, e);
    return;
  } catch (const std::exception& e) {
    // Nothing changed (restore_shared_state checks first); the split repair is left.
    spdlog::error("round {:016x} is poisoned ({}), but going back failed: {}", round_id, why,
                  readable_error(e));
    return;
  }
  refresh_state_digest(st);
  metrics.discarded_rounds.with({"discarded"}).inc();
  spdlog::error("epoch {}: round {:016x} discarded: {}; back to the state from before it",
                st.progress.epoch, round_id, why);
  report_progress(self);
  // What this epoch served and wrote held the poisoned state: both again (the final weights
  // are written at the end anyway).
  if (st.progress.epoch % st.options.config.averaging.state_every == 0)
    serve_state(self);
  if (current_step(st) % st.options.config.train.checkpoint_every == 0 && !reached_limit(st))
    save_checkpoint(self);
}

// The swarm reached the target for this epoch: average, then apply.
void start_round(trainer_pointer self) {
  auto& st = self->state;
  if (st.phase != swarm_phase::training || st.finishing || st.epoch_samples == 0)
    return;
  st.phase = swarm_phase::averaging;
  peer_health::global().set(peer_health::activity::averaging,
                            "epoch " + std::to_string(st.progress.epoch));
  const auto& mode = averaging_mode(st);
  std::vector<float> values;
  try {
    tell_node(st, node_command::take_round);
    if (st.node && mode == "gradients")
      sum_node_accumulation(*st.node, *st.model);
  } catch (const node_collective_error& e) {
    quit_without_the_node(self, e);
    return;
  }
  if (mode == "gradients") {
    values = st.model->take_mean_gradient();
  } else if (mode == "parameters") {
    values = host_floats(st.model->parameters().values());
  } else {
    values = st.outer->pseudo_gradient(st.model->parameters().values());
    keep_sent_parameters(st);
  }
  if (!st.tensor_bounds) {
    auto bounds = std::make_shared<std::vector<uint64_t>>();
    for (const auto& e : st.model->parameters().entries())
      bounds->push_back(static_cast<uint64_t>(e.offset));
    bounds->push_back(static_cast<uint64_t>(st.model->parameters().size()));
    st.tensor_bounds = bounds;
  }
  st.round_samples = st.epoch_samples;
  st.round_loss = st.epoch_loss / static_cast<double>(std::max<int64_t>(st.epoch_batches, 1));
  st.epoch_samples = 0;
  st.epoch_loss = 0;
  st.epoch_batches = 0;
  // An fp16 gradient that overflowed travels as zeros: weighed as almost nothing (a weight must
  // be positive), it leaves the others' average as it is.
  constexpr double overflowed_weight = 1e-6;
  const bool overflowed = mode == "gradients" && st.model->gradient_overflowed();
  average_request request{st.progress.epoch,
                          std::make_shared<const std::vector<float>>(std::move(values)),
                          overflowed ? overflowed_weight : static_cast<double>(st.round_samples),
                          st.tensor_bounds, round_discard_sink{self}};
  step_ahead(st, *request.values);
  auto epoch = st.progress.epoch;
  auto own_values = request.values;
  // Urgent, and so is its answer (CAF keeps a request's priority for the response): during an
  // overlapped round it overtakes the batches waiting in the mailbox (see the batch handler).
  self
    ->request<caf::message_priority::high>(st.options.averager, st.options.averaging_deadline,
                                           average_atom_v, request)
    .then(
      [=](average_outcome& outcome) {
        auto& st = self->state;
        auto before_round = take_back_step_ahead(st);
        if (outcome.result == round_result::missed) {
          if (st.missed_epoch != epoch || !st.missed_expired) {
            st.missed_epoch = epoch;
            st.missed_expired = false;
            miss_round(self);
            return;
          }
          // Missed again after the swarm did not move past the epoch: the round that formed
          // without this peer is long over and no state of it is coming (its peers stepped
          // alone or left), so asking again would only be told "closed" again. Step alone.
          spdlog::warn("epoch {}: missed again and no swarm state came; stepping alone", epoch);
          outcome.result = round_result::alone;
          outcome.values = own_values;
        }
        if (outcome.result == round_result::failed)
          spdlog::warn("epoch {}: averaging failed ({}); stepping with local values", epoch,
                       outcome.detail);
        st.phase = swarm_phase::training;  // apply_outcome may settle after the last epoch
        try {
          apply_outcome(self, outcome, std::move(before_round));
        } catch (const std::exception& e) {
          spdlog::error("applying the round of epoch {} failed: {}", epoch, readable_error(e));
          st.metrics.failures.inc();
          self->quit(make_error(errc::training_failed, readable_error(e)));
          return;
        }
        peer_health::global().set(peer_health::activity::training);
        if (st.resync_needed)
          catch_up(self, st.progress.epoch, "the last round had no partner",
                   st.swarm_view.state_servers);
        else if (!st.agreeing_servers.empty())
          catch_up(self, st.progress.epoch, "the weights differ from the swarm's",
                   std::exchange(st.agreeing_servers, {}));
        drain_waiting_batches(self);
      },
      [=](const caf::error& err) {
        // The averager itself did not answer in time: a bug or an overloaded peer. Restart.
        take_back_step_ahead(self->state);
        spdlog::error("epoch {}: no answer from the averager: {}", epoch,
                      self->system().render(err));
        self->quit(make_error(errc::round_timeout, self->system().render(err)));
      });
}

} // namespace ddactor::trainer_internal
