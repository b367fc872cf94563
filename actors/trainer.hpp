#pragma once
// The trainer actor: one DiT replica on one device. It pulls batches from a data loader, takes
// optimizer steps, reports progress, hands checkpoint snapshots to the checkpointer and writes
// sample grids. It runs detached (its own thread), so a training step never blocks CAF's scheduler
// and heartbeats are answered while it computes.
//
// Lifecycle (driven by its supervisor, the peer):
//
//   spawn --> restore latest checkpoint (if any) --> wait for a loader
//     (attach, loader, generation) --> fetch from (epoch, position) --> TRAINING
//   TRAINING: batch --> step --> credit back to the loader; every N steps log / checkpoint / grid
//   step limit or time limit reached --> final checkpoint + grid --> quit(normal)
//   (stop) from the peer (Ctrl-C) --> final checkpoint --> reply step --> quit(normal)
//   (restart) from the peer (trainers attach) --> the same at the end of the epoch in progress
//     (a lone peer: at once), so that the new set starts at an epoch boundary
//   an exception in a step --> quit(training_failed) --> the peer restarts it from the checkpoint
//
// Several trainers in one peer (run.trainers = N) run in lock-step, like PyTorch's
// DDP: each has its own data loader, which hands it its slice of every batch of the node; they
// start from rank 0's state (models/node_training.hpp), and each step sums their gradients over
// c10d's Gloo (on the trainers' own threads) before every rank takes the same optimizer step.
// Rank 0 decides for all when the run ends (its time limit goes into a sum too). Ranks > 0
// neither log nor checkpoint; a stop makes them quit at once. One rank failing fails the
// others' next sum (at once when its connection closes, else after the group's timeout), and
// the peer restarts the whole set from rank 0's newest checkpoint.
//
// In a swarm (progress and averager set) a step is an epoch of the swarm:
//
//   TRAINING: batch --> accumulate (gradients) or local step (parameters, diloco)
//             --> (progress, epoch, samples, samples/s) to the progress actor
//   (average, epoch) from progress: the swarm reached train.target_batch_size --> AVERAGING:
//     the vector (mean gradient | parameters | pseudo-gradient) goes to the averager; batches
//     that arrive meanwhile wait in a queue bounded by the loader's credits (with
//     averaging.overlap in gradients or DiLoCo mode they train into the next epoch, up to
//     this peer's samples of the round, then wait)
//   average_outcome --> apply (same step everywhere | set parameters | outer Nesterov step,
//     which with overlap keeps the inner steps taken during the round on top of the anchor)
//     --> epoch + 1 --> (every averaging.state_every epochs: a copy to the state server)
//     --> TRAINING
//   a missed round (the leader had formed the epoch's groups) --> nothing applied, batches wait
//     --> DOWNLOADING the swarm's next state once a peer reports it (or TRAINING again if the
//     swarm is gone or does not move in time)
//   swarm_progress shows a peer at a higher epoch, or our round had no partner while the swarm
//   has others --> DOWNLOADING the shared state from the most advanced peers --> TRAINING
//
// A swarm peer with several trainers is one peer to the swarm: rank 0 alone runs the diagram
// above and reports the node's samples. Before each thing it does to the model it broadcasts a
// command over the node's Gloo group, and the other ranks, each holding its next batch, do the
// same in the same order:
//
//   train_batch  --> every rank accumulates its slice of the node's batch (gradients); or the
//                    slices are summed and every rank takes the node's local step (parameters,
//                    diloco)
//   take_round   --> every rank checks its weights' digest against rank 0's; in gradients mode
//                    the node's accumulations are summed and rank 0 sends their mean to the round
//                    (in the other modes it sends its parameters or its pseudo-gradient)
//   apply_update --> rank 0's outcome of the round follows; every rank applies it (steps with
//                    the mean gradient, takes the mean parameters, or takes the same outer
//                    Nesterov step from the same anchor and momentum)
//   take_state   --> rank 0 took a downloaded state; its whole state follows (as at the start)
//   stop         --> the run ended; rank 0 writes the final checkpoint

#include <functional>

#include "caf/all.hpp"

#include "actors/averager.hpp"
#include "actors/checkpointer.hpp"
#include "actors/data_loader.hpp"
#include "actors/progress.hpp"
#include "actors/state_server.hpp"
#include "config/run_config.hpp"
#include "models/node_reducer.hpp"

namespace ddactor {

using trainer_actor = caf::typed_actor<
  caf::reacts_to<batch_message>,
  caf::reacts_to<attach_atom, data_loader_actor, uint64_t /*generation*/>,
  caf::reacts_to<attach_atom, checkpointer_actor>,
  caf::reacts_to<average_atom, int64_t /*epoch*/>,
  caf::reacts_to<swarm_progress>,
  caf::reacts_to<drain_atom>,  // to itself: the next batch that waited for a round
  caf::reacts_to<retry_atom>,  // to itself: a failed checkpoint's next attempt may be due
  caf::reacts_to<tick_atom>,   // to itself: batches held after an overlapped round may go on
  // From the peer: checkpoint and quit at the next epoch boundary (the set re-forms).
  caf::reacts_to<restart_atom>,
  // From the averager: an audit proved a reducer of this round lied (discard_round).
  caf::reacts_to<discard_atom, uint64_t /*round_id*/, std::string /*why*/>,
  caf::replies_to<stop_atom>::with<int64_t /*step*/>>;

struct trainer_options {
  run_config config;
  checkpointer_actor checkpointer;
  /// Captions whose samples fill the grid rows of a caption-conditioned model.
  std::vector<std::string> grid_prompts;
  /// Fault injection for supervision tests: throw once at config.debug.crash_trainer_at_step.
  bool inject_crash = false;
  /// Swarm mode: the peer's progress and averager actors (both null for a lone peer), and how
  /// long to wait for a round at most.
  progress_actor progress;
  averager_actor averager;
  std::chrono::milliseconds averaging_deadline{120000};
  /// Seed of this peer's noise and dropout stream (differs between peers of a swarm).
  uint64_t noise_seed = 0;
  /// Asked between the sampling steps of sample grids (a stop signal cuts a long grid short).
  std::function<bool()> stop_requested;
  /// Swarm mode: where this peer serves its state to others, and its swarm id.
  state_server_actor state_server;
  std::string swarm_id;
  /// Several trainers in one peer (run.trainers): this one's rank and where the set meets
  /// (models/node_reducer.hpp). Rank 0 alone logs, checkpoints and writes sample grids.
  int rank = 0;
  int ranks = 1;
  std::shared_ptr<node_rendezvous> rendezvous;
  /// A rank > 0 of a swarm peer, in another process (`ddactor trainer`): it has no progress or
  /// averager of its own and follows rank 0's node commands as the peer's own ranks do.
  bool follows_swarm = false;
};

trainer_actor spawn_trainer(caf::actor_system& system, trainer_options options);

} // namespace ddactor
