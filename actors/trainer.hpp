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
//   an exception in a step --> quit(training_failed) --> the peer restarts it from the checkpoint

#include "caf/all.hpp"

#include "actors/checkpointer.hpp"
#include "actors/data_loader.hpp"
#include "config/run_config.hpp"

namespace ddactor {

using trainer_actor = caf::typed_actor<
  caf::reacts_to<batch_message>,
  caf::reacts_to<attach_atom, data_loader_actor, uint64_t /*generation*/>,
  caf::reacts_to<attach_atom, checkpointer_actor>,
  caf::replies_to<stop_atom>::with<int64_t /*step*/>>;

struct trainer_options {
  run_config config;
  checkpointer_actor checkpointer;
  /// Captions whose samples fill the grid rows of a caption-conditioned model.
  std::vector<std::string> grid_prompts;
  /// Fault injection for supervision tests: throw once at config.debug.crash_trainer_at_step.
  bool inject_crash = false;
};

trainer_actor spawn_trainer(caf::actor_system& system, trainer_options options);

} // namespace ddactor
