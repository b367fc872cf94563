#pragma once
// Internal to the trainer actor: included by actors/trainer*.cpp only, never outside them. The
// trainer's state and the functions its parts share, one part a file:
//   trainer.cpp              the behaviour (message handlers), a lone peer, logs and limits
//   trainer_checkpoints.cpp  restoring and writing checkpoints, with retries
//   trainer_sample_grid.cpp  sample grids
//   trainer_swarm.cpp        a swarm peer: rounds, catching up by download, settling, serving
//                            its state, progress reports
//   trainer_node.cpp         several trainers in one peer: rank 0's commands and the followers

#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "actors/trainer.hpp"
#include "models/checkpoint.hpp"
#include "models/model_trainer.hpp"
#include "models/node_reducer.hpp"
#include "models/outer_optimizer.hpp"
#include "models/shared_state.hpp"
#include "models/step_ahead_probe.hpp"
#include "monitoring/ddactor_metrics.hpp"
#include "runtime/message_types.hpp"
#include "runtime/progress_meter.hpp"
#include "runtime/training_batch.hpp"

namespace ddactor::trainer_internal {

using clock_type = std::chrono::steady_clock;

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
  roll_back,     // rank 0 discarded its last round (discard_round): its whole state follows, and
                 // the epoch's accumulation stays
};

// The shared state from before the last round this peer applied, while an audit may still
// prove that round poisoned (average_outcome::may_be_discarded).
struct applied_round_backup {
  uint64_t round_id = 0;
  shared_state_copy state;
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
  int64_t steps_ahead = 0;        // rounds trained through one own step ahead (step_ahead)
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
  // Overlap: this peer trained its share of the new epoch during the round just applied, so the
  // others most likely did too; batches wait until this time for their reports (batches_wait).
  clock_type::time_point share_held_until;
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
  // DiLoCo with overlap: the parameters whose pseudo-gradient is in the round now (undefined when
  // none is), so that the local steps taken meanwhile stay on top of the new anchor.
  torch::Tensor sent_parameters;
  // Discarding a poisoned round (discard_round): the state from before the last round applied
  // (one copy of the state at most: the next round replaces it), a discard that came while the
  // next round was out (done before that round is applied), and the last round proven poisoned
  // (several audits may prove the same round).
  std::optional<applied_round_backup> round_backup;
  // Gradients mode with overlap and averaging.step_ahead: the state from before the step taken
  // with this peer's own gradient while its round runs (take_back_step_ahead puts it back before
  // the swarm's average is applied).
  std::optional<shared_state_copy> before_step_ahead;
  // How close each step ahead came to the swarm's step (metrics, and the means at the end).
  step_ahead_probe guess_probe;
  // Gradients mode: the norm of the last average applied. The step ahead clips the own gradient
  // as if its norm were this one (the own share's noise makes its norm larger than the
  // average's, and clipped by it the guess would fall short of the swarm's step every round).
  std::optional<double> last_average_norm;
  std::optional<std::pair<uint64_t, std::string>> pending_discard;
  uint64_t poisoned_round = 0;
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
  std::vector<state_server_remote> agreeing_servers;
  // Manifest digests of downloaded states no quorum vouched for: never downloaded again.
  std::set<uint64_t> refused_state_digests;
  // A downloaded state waiting for a quorum to vouch for it (the phase stays downloading).
  std::optional<pending_download> pending_state;
  training_metrics metrics{global_metrics()};
  // Several trainers in one peer: the node's collective (null for one trainer), and whether rank
  // 0 ended the run at the last step (every rank learns it in the same sum).
  std::unique_ptr<node_reducer> node;
  bool node_done = false;
  // The peer re-forms the node's set (restart_atom): stop when the epoch in progress is done.
  bool stop_at_epoch_end = false;
  static inline const char* name = "trainer";
};

using trainer_pointer = trainer_actor::stateful_pointer<trainer_state>;

// --- trainer.cpp: limits, metrics and the end of a run ------------------------------------

const std::string& averaging_mode(const trainer_state& st);
int64_t current_step(const trainer_state& st);
bool reached_limit(const trainer_state& st);
void record_step_metrics(trainer_state& st, const step_result& r, double seconds);
// config.debug's faults before a batch: a delay, a crash, an out-of-memory failure.
void check_injected_faults(const trainer_state& st, const training_batch& batch);
caf::error step_failure(trainer_state& st, const std::exception& e);
void finish(trainer_pointer self, const char* why);
void stop_for_new_set(trainer_pointer self);
void after_step(trainer_pointer self, double lr);

// --- trainer_checkpoints.cpp --------------------------------------------------------------

void restore_latest(trainer_state& st);
void attempt_checkpoint(trainer_pointer self);
void save_checkpoint(trainer_pointer self);
void save_final_checkpoint(trainer_pointer self);

// --- trainer_sample_grid.cpp --------------------------------------------------------------

void write_sample_grid(trainer_state& st);

// --- trainer_swarm.cpp --------------------------------------------------------------------

bool overlapping(const trainer_state& st);
void step_ahead(trainer_state& st, std::span<const float> own_gradient);
std::optional<shared_state_copy> take_back_step_ahead(trainer_state& st);
bool batches_wait(const trainer_state& st);
void settle_or_finish(trainer_pointer self);
void continue_settling(trainer_pointer self, const swarm_progress& view);
void report_progress(trainer_pointer self, int64_t in_flight = 0);
void refresh_state_digest(trainer_state& st);
void serve_state(trainer_pointer self);
std::chrono::milliseconds join_wait(const run_config& config);
void consider_pending_state(trainer_pointer self);
void catch_up(trainer_pointer self, int64_t min_epoch, const char* why,
              std::vector<state_server_remote> candidates);
void train_in_swarm(trainer_pointer self, const training_batch& batch);
void discard_round(trainer_pointer self, uint64_t round_id, const std::string& why);
void finish_joining(trainer_pointer self, const swarm_progress& view);
void drain_waiting_batches(trainer_pointer self);
void start_round(trainer_pointer self);

// --- trainer_node.cpp ---------------------------------------------------------------------

void tell_node(trainer_state& st, node_command command);
void share_node_state(trainer_state& st);
std::pair<double, std::optional<step_result>> train_node_batch(trainer_state& st,
                                                               const training_batch& batch);
std::optional<step_result> apply_round_values(trainer_state& st, std::span<const float> values);
void keep_sent_parameters(trainer_state& st);
void release_node(trainer_state& st);
bool node_ends_here(trainer_state& st);
void follow_with_batch(trainer_pointer self, std::shared_ptr<const training_batch> batch);

} // namespace ddactor::trainer_internal
