// The trainer actor; see trainer.hpp for its lifecycle, alone and in a swarm.
#include "actors/trainer.hpp"

#include <spdlog/spdlog.h>

#include <chrono>
#include <cmath>
#include <deque>
#include <mutex>
#include <optional>
#include <set>
#include <span>
#include <utility>

#include "models/checkpoint.hpp"
#include "models/diffusion_trainer.hpp"
#include "models/latent_dit_sampling.hpp"
#include "models/latent_dit_trainer.hpp"
#include "models/tensor_image_grid.hpp"
#include "models/image_generation.hpp"
#include "models/model_config.hpp"
#include "models/node_training.hpp"
#include "models/outer_optimizer.hpp"
#include "models/readable_error.hpp"
#include "models/sd/sd_sampling.hpp"
#include "models/sd/sd_trainer.hpp"
#include "models/shared_state.hpp"
#include "actors/state_download.hpp"
#include "monitoring/ddactor_metrics.hpp"
#include "runtime/state_quorum.hpp"
#include "monitoring/peer_health.hpp"
#include "runtime/actor_ticks.hpp"
#include "runtime/checkpoint_files.hpp"
#include "runtime/image_io.hpp"
#include "runtime/progress_meter.hpp"
#include "runtime/run_data.hpp"
#include "runtime/state_agreement.hpp"

namespace ddactor {

namespace {

using clock_type = std::chrono::steady_clock;

// Smoothing of this peer's samples/s as reported to the swarm.
constexpr double rate_smoothing = 0.3;

// Waits between attempts to write a checkpoint that failed, and how often the final one is tried.
constexpr std::chrono::milliseconds first_checkpoint_backoff{1000};
constexpr std::chrono::milliseconds max_checkpoint_backoff{60000};
constexpr int final_checkpoint_attempts = 4;

// Waits between failed state downloads: from the first to the largest.
constexpr std::chrono::milliseconds first_catch_up_backoff{250};
constexpr std::chrono::milliseconds max_catch_up_backoff{8000};

struct swarm_round_info {
  int32_t group_size = 0;
  double seconds = 0;
  bool averaged = false;
  uint64_t bytes_sent = 0;
  uint64_t bytes_received = 0;
};

// What the swarm half of the trainer is doing besides training, one thing at a time.
enum class swarm_phase : uint8_t {
  joining,      // learning where the swarm is before the first batch (batches wait)
  training,     // batches train into the epoch
  averaging,    // the epoch's round runs (batches wait, or train into the next epoch: overlap)
  missed,       // the swarm averaged this epoch without us: batches wait for its next state
  downloading,  // taking the swarm's state (batches wait)
  settling,     // the last epoch is done: final weights are compared (settle_or_finish)
};

// In a swarm, rank 0 alone talks to the swarm; before each thing it does to the node's model it
// tells the other trainers of its node the same (a broadcast of {command, epoch, digest}), and
// they do it in the same order, so that every rank holds the same state.
enum class node_command : int64_t {
  train_batch,   // train your next batch into the epoch (train_node_batch)
  take_round,    // the epoch's round starts: in gradients mode, sum the node's accumulation and
                 // start the next (the message carries rank 0's weight digest: a rank that
                 // differs fails the set)
  apply_update,  // the round's outcome follows: apply it (apply_round_values)
  take_state,    // rank 0 took the swarm's state: its whole state follows (share_node_state)
  stop,          // the run ended (rank 0 writes the final checkpoint)
};

// A downloaded state that waits for a quorum of peers to vouch for it.
struct pending_download {
  state_download_result result;
  int64_t epoch = 0;
  uint64_t digest = 0;  // of its weights; 0 where digests are not computed
  std::chrono::steady_clock::time_point started;  // of the download
  std::chrono::steady_clock::time_point until;    // refused when still not vouched for then
};

struct trainer_state {
  trainer_options options;
  std::unique_ptr<model_trainer> model;
  data_loader_actor loader;
  uint64_t loader_generation = 0;
  training_progress progress;
  bool finishing = false;
  clock_type::time_point started = clock_type::now();
  // Progress window between two log lines.
  clock_type::time_point window_start = clock_type::now();
  // Steps (or epochs) per second, smoothed: the ETA.
  smoothed_rate step_rate;
  bool progress_logged = false;
  int64_t window_samples = 0;
  int64_t window_overlapped = 0;  // of window_samples, those trained while a round ran
  int64_t samples_trained = 0;    // by this trainer since it started
  int64_t samples_overlapped = 0; // of those, trained while a round ran
  int64_t window_steps = 0;
  double window_loss = 0;
  // Swarm mode.
  bool swarm = false;
  int64_t epoch_samples = 0;
  double epoch_loss = 0;
  int64_t epoch_batches = 0;
  double samples_per_second = 0;
  clock_type::time_point last_batch = clock_type::now();
  int64_t ready_epoch = -1;
  swarm_phase phase = swarm_phase::training;
  // A failed download returns to the phase it left (missed, joining or training).
  swarm_phase phase_before_download = swarm_phase::training;
  // The epoch being averaged, kept apart from the next one's samples, which accumulate meanwhile
  // with averaging.overlap (0 outside a round).
  int64_t round_samples = 0;
  double round_loss = 0;
  // Missed: batches wait until the swarm's next state is downloaded, or until missed_deadline
  // (the swarm may have gone).
  clock_type::time_point missed_deadline;
  // The epoch last missed, and whether its wait for the swarm's state ran out.
  int64_t missed_epoch = -1;
  bool missed_expired = false;
  // Settling: the final weights are written once the swarm agrees, or at this time regardless.
  clock_type::time_point settle_deadline;
  std::deque<std::shared_ptr<const training_batch>> waiting_batches;
  bool drain_pending = false;  // a drain_atom to itself is on its way
  swarm_progress swarm_view;
  swarm_round_info last_round;
  std::unique_ptr<outer_nesterov> outer;
  std::shared_ptr<const std::vector<uint64_t>> tensor_bounds;
  // A peer started with initial_peers trains only once it knows where the swarm is (it may be
  // far ahead): joining until the others' reports arrive, or until join_deadline.
  clock_type::time_point join_deadline;
  // Stepped alone while others exist and the state cannot be compared by digest (a lossy state
  // transfer): a download from a peer that holds the swarm's state is due.
  bool resync_needed = false;
  // The epoch this peer reached by a download from further back than the epoch before (it does
  // not lead that epoch's round), or -1.
  int64_t downloaded_epoch = -1;
  // Checkpoints (see attempt_checkpoint): the newest snapshot not yet on disk, and its retries.
  std::optional<checkpoint_snapshot> pending_checkpoint;
  bool checkpoint_in_flight = false;
  int checkpoint_failures = 0;  // consecutive
  clock_type::time_point next_checkpoint_attempt;
  bool quit_after_checkpoint = false;
  std::optional<caf::typed_response_promise<int64_t>> stop_promise;
  std::string last_checkpoint;  // the newest written by this trainer
  checkpoint_metrics checkpoints{global_metrics()};
  // After a failed download, the next attempt waits (doubling up to max_catch_up_backoff).
  clock_type::time_point catch_up_not_before;
  std::chrono::milliseconds catch_up_backoff{0};
  // state_digest_of the weights at the start of this epoch, reported to find split groups.
  uint64_t state_digest = 0;
  // Peers that hold the agreed weights while ours differ; a download from them is due.
  std::vector<caf::actor> agreeing_servers;
  // Manifest digests of downloaded states no quorum vouched for: never downloaded again.
  std::set<uint64_t> refused_state_digests;
  // A downloaded state waiting for a quorum to vouch for it (the phase stays downloading).
  std::optional<pending_download> pending_state;
  training_metrics metrics{global_metrics()};
  // Several trainers in one peer: the node's collective (null for one trainer), and whether rank
  // 0 ended the run at the last step (every rank learns it in the same sum).
  std::unique_ptr<node_reducer> node;
  bool node_done = false;
  static inline const char* name = "trainer";
};

using trainer_pointer = trainer_actor::stateful_pointer<trainer_state>;

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

const std::string& averaging_mode(const trainer_state& st) {
  return st.options.config.train.averaging;
}

// Gradients mode with averaging.overlap: batches train into the next epoch while a round runs.
// (In the other modes a round averages or moves the weights that local steps would change.)
bool overlapping(const trainer_state& st) {
  return st.options.config.averaging.overlap && averaging_mode(st) == "gradients";
}

// Batches wait in order while the weights are about to be replaced, or the swarm is not found
// yet. During a round, an overlapping peer trains up to twice what it put into the round, and
// never more than train.target_batch_size: a round slower than an epoch's compute then grows the
// next epoch until its compute covers the round (instead of idling), but no further (a stalled
// round would otherwise grow it without bound).
bool batches_wait(const trainer_state& st) {
  const int64_t overlap_limit = std::min<int64_t>(
    2 * st.round_samples, std::max<int64_t>(st.options.config.train.target_batch_size, 1));
  switch (st.phase) {
    case swarm_phase::training: return false;
    case swarm_phase::averaging: return !overlapping(st) || st.epoch_samples >= overlap_limit;
    case swarm_phase::joining:
    case swarm_phase::missed:
    case swarm_phase::downloading:
    case swarm_phase::settling: return true;
  }
  return true;
}

// The step count the limits and logs refer to: epochs in a swarm, optimizer steps alone.
int64_t current_step(const trainer_state& st) {
  return st.swarm ? st.progress.epoch : st.progress.step;
}

// Identical replicas have identical digests; checked once per round, before the node's sum.
int64_t weights_digest(model_trainer& model) {
  const auto& weights = model.parameters().values();
  return static_cast<int64_t>(
    state_digest_of({weights.data_ptr<float>(), static_cast<size_t>(weights.numel())}));
}

// A swarm peer with several trainers: rank 0 tells the others what it does next (node_command).
// Throws node_collective_error when one of them is gone.
void tell_node(trainer_state& st, node_command command) {
  if (!st.node || !st.swarm || st.options.rank != 0)
    return;
  const int64_t digest = command == node_command::take_round ? weights_digest(*st.model) : 0;
  auto message =
    torch::tensor({static_cast<int64_t>(command), st.progress.epoch, digest}, torch::kInt64);
  st.node->broadcast_(message, 0);
}

// Rank 0's whole state to the other ranks of its node: at the start and after a download.
void share_node_state(trainer_state& st) {
  share_training_state(*st.node, *st.model, st.progress);
  if (st.outer)
    share_outer_state(*st.node, *st.outer);
}

// One batch of a swarm epoch, the same on every rank of a node. Gradients mode accumulates it
// for the round. The other modes take a local step, which with several trainers is the node's
// step: the ranks' accumulations are summed first, so that every rank takes the same step (as a
// lone peer's node does, train_alone). Returns the loss, and the step where one was taken.
std::pair<double, std::optional<step_result>> train_node_batch(trainer_state& st,
                                                               const training_batch& batch) {
  if (averaging_mode(st) == "gradients")
    return {st.model->accumulate(batch), std::nullopt};
  st.model->accumulate(batch);
  if (st.node)
    sum_node_accumulation(*st.node, *st.model);
  auto result = st.model->apply_step();
  return {result.loss, result};
}

// A round's outcome, the same on every rank of a node: the same step with the swarm's mean
// gradient, the swarm's average of parameters, or the same outer Nesterov step with the swarm's
// mean pseudo-gradient (each rank holds the node's anchor and momentum: share_node_state). The
// step's result in gradients mode.
std::optional<step_result> apply_round_values(trainer_state& st, std::span<const float> values) {
  const auto& mode = averaging_mode(st);
  if (mode == "gradients")
    return st.model->apply_gradient(values);
  if (mode == "parameters") {
    st.model->set_parameters(values);
  } else {
    auto params = st.model->parameters().values();
    st.outer->step(values, params);
  }
  return std::nullopt;
}

// The run ends: the other trainers quit. One already gone is no error any more. A round's
// outcome that still comes is applied by rank 0 alone (it may reach the final checkpoint).
void release_node(trainer_state& st) {
  if (!st.node || !st.swarm)
    return;
  try {
    tell_node(st, node_command::stop);
  } catch (const node_collective_error& e) {
    spdlog::warn("the node's other trainers were gone at the end: {}", e.what());
  }
  st.node.reset();
}

std::map<std::string, torch::Tensor> extra_tensors(const trainer_state& st) {
  if (!st.outer)
    return {};
  return {{"outer.anchor", st.outer->anchor()}, {"outer.momentum", st.outer->momentum()}};
}

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

// A Stable Diffusion run's grid: one row per grid prompt at the training resolution, with the
// sampler sample.sampler names (or the folder's default), from the EMA weights where there are.
torch::Tensor sample_sd_grid(trainer_state& st, sd_trainer& sd, int64_t& columns,
                             std::vector<std::string>& row_labels) {
  const auto& cfg = st.options.config;
  sd_sampling_settings settings;
  settings.sampler = sd_sampler_named(cfg.sample.sampler)
                       .value_or(default_sd_sampler(*sd.pipeline().scheduler));
  settings.steps = cfg.sample.steps;
  settings.cfg_scale = cfg.sample.cfg_scale;
  settings.seed = cfg.sample.seed;
  settings.width = settings.height = cfg.data.resolution;
  auto prompts = st.options.grid_prompts;
  if (prompts.empty())
    prompts.push_back("");
  if (prompts.size() > 4)
    prompts.resize(4);  // each image costs a full sampling on the training thread
  row_labels = prompt_labels(prompts);
  columns = std::min(cfg.sample.per_class, 4);
  sampling_callbacks callbacks;
  callbacks.on_progress = show_progress(
    fmt::format("sample grid of {} images", columns * static_cast<int64_t>(prompts.size())),
    "steps");
  callbacks.stop_requested = st.options.stop_requested;
  sd_generation result;
  sd.with_sampling_unet([&](unet2d_condition& unet) {
    result = generate_sd_images(sd.pipeline(), unet, prompts, columns, settings, callbacks);
  });
  if (result.outcome == sampling_outcome::stopped)
    throw work_stopped();
  return result.images;
}

void write_grid_png(trainer_state& st, const torch::Tensor& grid, int64_t columns,
                    const std::vector<std::string>& row_labels) {
  auto dir = st.options.config.run_dir() / "samples";
  std::filesystem::create_directories(dir);
  auto path = dir / fmt::format("step_{:08}.png", current_step(st));
  write_tensor_grid_png(path, grid, columns, row_labels);
  std::filesystem::copy_file(path, dir / "latest.png",
                             std::filesystem::copy_options::overwrite_existing);
  spdlog::info("sample grid written to {}", path.string());
}

// A latent DiT's grid: one row per grid prompt (at most 4: each image costs a sampling and a
// VAE decode on the training thread), from the EMA weights.
void write_latent_dit_grid(trainer_state& st, latent_dit_trainer& latent,
                           const generation_settings& gen) {
  auto model = latent.ema_model();
  latent_dit_request request;
  if (model->options().conditioning == "text_embedding")
    request.prompts = st.options.grid_prompts;
  if (request.prompts.empty())
    request.prompts.push_back("");
  if (request.prompts.size() > 4)
    request.prompts.resize(4);
  request.per_prompt = std::min(st.options.config.sample.per_class, 4);
  const auto count = static_cast<int64_t>(request.prompts.size()) * request.per_prompt;
  auto images = generate_latent_dit_images(
    model, latent.pipeline(), request, gen,
    show_progress(fmt::format("sample grid of {} images", count), "steps"));
  write_grid_png(st, images, request.per_prompt, prompt_labels(request.prompts));
}

void write_sample_grid(trainer_state& st) {
  const auto& cfg = st.options.config;
  if (auto* sd = dynamic_cast<sd_trainer*>(st.model.get())) {
    int64_t columns = 1;
    std::vector<std::string> row_labels;
    auto grid = sample_sd_grid(st, *sd, columns, row_labels);
    write_grid_png(st, grid, columns, row_labels);
    return;
  }
  auto* diffusion = dynamic_cast<diffusion_trainer*>(st.model.get());
  if (diffusion == nullptr)
    return;  // a router has no samples to show
  auto model = diffusion->ema_model();
  generation_settings gen;
  gen.steps = cfg.sample.steps;
  gen.sampler = parse_sampler(cfg.sample.sampler);
  gen.cfg_scale = cfg.sample.cfg_scale;
  gen.seed = cfg.sample.seed;
  gen.stop_requested = st.options.stop_requested;
  if (auto* latent = dynamic_cast<latent_dit_trainer*>(diffusion)) {
    write_latent_dit_grid(st, *latent, gen);
    return;
  }
  dit_condition cond;
  int64_t rows = 8;
  int64_t columns = cfg.sample.per_class;
  std::vector<std::string> row_labels;
  if (cfg.model.conditioning == "class") {
    rows = cfg.model.num_classes;
    cond = class_rows(rows, columns);
    row_labels = class_label_names(cfg, rows);
  } else if (cfg.model.conditioning == "caption") {
    auto prompts = st.options.grid_prompts;
    if (prompts.empty())
      prompts.push_back("");
    rows = static_cast<int64_t>(prompts.size());
    cond = prompt_rows(prompts, columns, cfg.model.text_max_bytes);
    row_labels = prompt_labels(prompts);
  }
  write_grid_png(st,
                 generate_images(model, cond, gen, rows * columns,
                                 show_progress(fmt::format("sample grid of {} images",
                                                           rows * columns),
                                               "steps")),
                 columns, row_labels);
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

void attempt_checkpoint(trainer_pointer self);

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
    spdlog::info("checkpoints are written again after {} failed attempt(s)", st.checkpoint_failures);
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
    std::min(max_checkpoint_backoff, first_checkpoint_backoff * (1 << std::min(st.checkpoint_failures - 1, 10)));
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

void finish(trainer_pointer self, const char* why) {
  auto& st = self->state;
  if (st.finishing)
    return;
  st.finishing = true;
  peer_health::global().set(peer_health::activity::stopping);
  release_node(st);
  spdlog::info("training {} at {} {} ({} samples trained here, {} of them during rounds); "
               "writing the final checkpoint",
               why, st.swarm ? "epoch" : "step", current_step(st), st.samples_trained,
               st.samples_overlapped);
  try {
    write_sample_grid(st);
  } catch (const work_stopped&) {
    spdlog::warn("final sample grid skipped: a stop signal came while it was sampled");
  } catch (const std::exception& e) {
    spdlog::warn("final sample grid not written: {}", readable_error(e));
  }
  save_final_checkpoint(self);
}

void catch_up(trainer_pointer self, int64_t min_epoch, const char* why,
              std::vector<caf::actor> candidates);

// How long peers that hold the final weights wait for the others to reach and agree on them:
// enough for two agreement checks, a download and the reports that follow.
std::chrono::milliseconds settle_wait(const run_config& config) {
  return std::chrono::milliseconds(
    static_cast<int64_t>(1000 * std::max(3.0, 10 * config.network.gossip_interval)));
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

void record_step_metrics(trainer_state& st, const step_result& r, double seconds) {
  st.metrics.step_seconds.observe(seconds);
  st.metrics.steps.inc();
  st.metrics.samples.inc(r.samples);
  st.metrics.step.set(static_cast<double>(r.step));
  st.metrics.loss.set(r.loss);
  st.metrics.learning_rate.set(r.lr);
}

void check_injected_crash(const trainer_state& st) {
  const auto& cfg = st.options.config;
  if (st.options.inject_crash && cfg.debug.crash_trainer_at_step > 0 &&
      current_step(st) + 1 == cfg.debug.crash_trainer_at_step)
    throw std::runtime_error("injected trainer crash (debug.crash_trainer_at_step)");
}

// --- a lone peer ---------------------------------------------------------------------------

// Several trainers in one peer: rank 0 says whether the run ends after this step (its clock
// alone counts for train.max_seconds), so that every rank stops at the same step.
bool node_ends_here(trainer_state& st) {
  auto vote = torch::tensor({st.options.rank == 0 && reached_limit(st) ? 1 : 0}, torch::kInt32);
  st.node->sum_(vote);
  return vote.item<int32_t>() > 0;
}

void train_alone(trainer_pointer self, const training_batch& batch) {
  auto& st = self->state;
  check_injected_crash(st);
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

// --- a swarm peer --------------------------------------------------------------------------

// debug.byzantine = "forged_state" (tests of the state quorum): the epoch this peer claims and
// serves its forged state as lies this far ahead of its own.
int64_t forged_epoch_offset(const trainer_state& st) {
  const auto& debug = st.options.config.debug;
  return debug.allow_byzantine && debug.byzantine == "forged_state" ? 100000 : 0;
}

// `in_flight`: samples of the batch about to be trained, counted before the work. The swarm's
// estimate then includes every peer's batch in progress, so an epoch ends at most one batch past
// train.target_batch_size, not one batch per peer.
void report_progress(trainer_pointer self, int64_t in_flight = 0) {
  auto& st = self->state;
  // During a round the epoch's samples still count (a peer whose view lags has yet to see the
  // epoch ready); the next epoch's, trained meanwhile, are reported once the round is applied.
  // Sent as the trainer (not anonymously): progress takes its own peer's reports only from
  // this process (actors/local_control.hpp).
  caf::send_as(caf::actor_cast<caf::actor>(self), st.options.progress, progress_atom_v,
               st.progress.epoch + forged_epoch_offset(st),
               st.round_samples + st.epoch_samples + in_flight,
               st.samples_per_second, st.state_digest, st.resync_needed,
               st.progress.epoch != st.downloaded_epoch);
}

// After every change of the shared weights (a round, a download, a restore); about 0.6 s per GB
// on two cores, so only where split groups can be repaired (0: no digest).
void refresh_state_digest(trainer_state& st) {
  const auto& averaging = st.options.config.averaging;
  if (!split_repair_possible(averaging.state_compression, averaging.state_every))
    return;
  const auto& weights = st.model->parameters().values();
  st.state_digest = state_digest_of(
    {weights.data_ptr<float>(), static_cast<size_t>(weights.numel())});
}

void start_round(trainer_pointer self);
void drain_waiting_batches(trainer_pointer self);

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
  auto bytes = std::make_shared<const std::vector<char>>(encode_shared_state(
    *st.model, epoch, st.outer.get(), st.options.config.averaging.state_compression));
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
    spdlog::warn("trainer 0 of {} ends at epoch {}: {}", st.options.ranks, st.progress.epoch,
                 e.what());
    self->quit(make_error(errc::training_failed, e.what()));
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
              std::vector<caf::actor> candidates) {
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
  check_injected_crash(st);
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
  } else if (st.phase == swarm_phase::averaging) {
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

void apply_outcome(trainer_pointer self, const average_outcome& outcome) {
  auto& st = self->state;
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
  st.round_samples = 0;
  st.round_loss = 0;
  report_progress(self);
  // Served even while resyncing: when every peer stepped alone, one of them must serve.
  if (st.progress.epoch % st.options.config.averaging.state_every == 0)
    serve_state(self);
  after_step(self, lr);
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
    spdlog::error("trainer failed at {} {}: {}", st.swarm ? "epoch" : "step",
                  current_step(st) + 1, readable_error(e));
    st.metrics.failures.inc();
    self->quit(make_error(errc::training_failed, readable_error(e)));
  }
}

// The swarm averaged this epoch without us: our gradient has no place in it. Applying it alone
// would set this peer apart until a repair; instead it waits for the swarm's next state (the
// progress actor reports the swarm ahead as soon as one peer is) and trains on from there.
void miss_round(trainer_pointer self) {
  auto& st = self->state;
  st.phase = swarm_phase::missed;
  st.round_samples = 0;
  st.round_loss = 0;
  const auto& averaging = st.options.config.averaging;
  st.missed_deadline =
    clock_type::now() + std::chrono::milliseconds(static_cast<int64_t>(
                          1000 * (2 * averaging.matchmaking_time + averaging.allreduce_timeout)));
  peer_health::global().set(peer_health::activity::training);
  report_progress(self);
  if (st.swarm_view.max_epoch > st.progress.epoch)
    catch_up(self, st.swarm_view.max_epoch, "the swarm is ahead", st.swarm_view.state_servers);
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
    spdlog::warn("trainer 0 of {} ends at epoch {}: {}", st.options.ranks, st.progress.epoch,
                 e.what());
    self->quit(make_error(errc::training_failed, e.what()));
    return;
  }
  if (mode == "gradients") {
    values = st.model->take_mean_gradient();
  } else if (mode == "parameters") {
    const auto& p = st.model->parameters().values();
    values.assign(p.data_ptr<float>(), p.data_ptr<float>() + p.numel());
  } else {
    values = st.outer->pseudo_gradient(st.model->parameters().values());
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
  average_request request{st.progress.epoch,
                          std::make_shared<const std::vector<float>>(std::move(values)),
                          static_cast<double>(st.round_samples), st.tensor_bounds};
  auto epoch = st.progress.epoch;
  auto own_values = request.values;
  self->request(st.options.averager, st.options.averaging_deadline, average_atom_v, request)
    .then(
      [=](average_outcome& outcome) {
        auto& st = self->state;
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
          apply_outcome(self, outcome);
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
        spdlog::error("epoch {}: no answer from the averager: {}", epoch,
                      self->system().render(err));
        self->quit(make_error(errc::round_timeout, self->system().render(err)));
      });
}

// --- a rank > 0 of a swarm peer --------------------------------------------------------------

// Rank 0 talks to the swarm; this rank does what rank 0 tells it (node_command), one command at
// a time, while it holds a batch to train next: rank 0 waits in its broadcast until then.
void follow_rank_zero(trainer_pointer self) {
  auto& st = self->state;
  while (!st.finishing && !st.waiting_batches.empty()) {
    auto message = torch::zeros({3}, torch::kInt64);
    st.node->broadcast_(message, 0);
    st.progress.epoch = message[1].item<int64_t>();
    switch (static_cast<node_command>(message[0].item<int64_t>())) {
      case node_command::train_batch: {
        auto batch = std::move(st.waiting_batches.front());
        st.waiting_batches.pop_front();
        st.progress.data_epoch = batch->epoch_after;
        st.progress.data_position = batch->position_after;
        self->send(st.loader, credit_atom_v, int32_t{1});
        check_injected_crash(st);
        const auto [loss, local_step] = train_node_batch(st, *batch);
        if (!std::isfinite(loss))
          throw std::runtime_error("loss is not finite in epoch " +
                                   std::to_string(st.progress.epoch));
        if (local_step)
          st.progress.step = local_step->step;
        break;
      }
      case node_command::take_round:
        if (weights_digest(*st.model) != message[2].item<int64_t>())
          throw std::runtime_error("its weights differ from trainer 0's");
        if (averaging_mode(st) == "gradients") {
          sum_node_accumulation(*st.node, *st.model);
          st.model->take_mean_gradient();  // rank 0 sends it to the swarm
        }
        break;
      case node_command::apply_update: {
        auto update = torch::zeros({st.model->parameters().size()}, torch::kFloat32);
        st.node->broadcast_(update, 0);
        if (auto result = apply_round_values(
              st, {update.data_ptr<float>(), static_cast<size_t>(update.numel())}))
          st.progress.step = result->step;
        st.progress.epoch += 1;
        break;
      }
      case node_command::take_state:
        st.model->discard_accumulation();
        share_node_state(st);
        break;
      case node_command::stop:
        st.finishing = true;
        self->quit();
        return;
    }
  }
}

// A follower's batch, or it ends with an error (the peer restarts the node's set).
void follow_with_batch(trainer_pointer self, std::shared_ptr<const training_batch> batch) {
  auto& st = self->state;
  st.waiting_batches.push_back(std::move(batch));
  try {
    follow_rank_zero(self);
  } catch (const node_collective_error& e) {
    spdlog::warn("trainer {} of {} ends at epoch {}: {}", st.options.rank, st.options.ranks,
                 st.progress.epoch, e.what());
    self->quit(make_error(errc::training_failed, e.what()));
  } catch (const std::exception& e) {
    spdlog::error("trainer {} of {} failed in epoch {}: {}", st.options.rank, st.options.ranks,
                  st.progress.epoch, readable_error(e));
    st.metrics.failures.inc();
    self->quit(make_error(errc::training_failed, readable_error(e)));
  }
}

trainer_actor::behavior_type trainer(trainer_pointer self, trainer_options options) {
  auto& st = self->state;
  st.options = std::move(options);
  st.swarm = st.options.progress != nullptr && st.options.averager != nullptr;
  auto settings = make_trainer_settings(st.options.config);
  settings.noise_seed = st.options.noise_seed;
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
    st.node = std::make_unique<node_reducer>(
      st.options.rendezvous, node_reducer_options{st.options.rank, st.options.ranks});
    share_node_state(st);
  }
  if (st.options.rank == 0) {
    st.metrics.step.set(static_cast<double>(st.progress.step));
    spdlog::info("trainer ready: {} with {} trained parameters in {}, starting at {} {}{}",
                 trained_model_name(*st.model), st.model->parameters().size(),
                 st.options.config.train.precision, st.swarm ? "epoch" : "step",
                 current_step(st),
                 st.options.ranks > 1
                   ? fmt::format(" ({} trainers in this peer, reduced with Gloo)", st.options.ranks)
                   : std::string());
  }
  if (st.swarm && st.options.rank == 0) {
    if (!st.options.config.network.initial_peers.empty())
      st.phase = swarm_phase::joining;
    st.join_deadline = clock_type::now() + join_wait(st.options.config);
    refresh_state_digest(st);
    caf::send_as(caf::actor_cast<caf::actor>(self), st.options.progress, attach_atom_v,
                 caf::actor_cast<caf::actor>(self));
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
      if (batches_wait(st) || !st.waiting_batches.empty()) {
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
      st.agreeing_servers = view.diverged ? view.agreeing_servers : std::vector<caf::actor>{};
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

trainer_actor spawn_trainer(caf::actor_system& system, trainer_options options) {
  return system.spawn<caf::detached>(trainer, std::move(options));
}

} // namespace ddactor
