#pragma once
// The peer actor: the root of one ddactor process. It spawns the checkpointer, the data loader and
// the trainer, monitors them, and restarts a failed one with backoff (runtime/restart_policy.hpp).
//
// Child lifecycle, per child:
//
//   ALIVE --(down, abnormal)--> RESTARTING --(backoff elapsed)--> ALIVE
//     |                              |
//     |                              +--(restart budget spent)--> peer fails (exit code 1)
//     +--(trainer down, normal: training finished or stopped)--> peer quits normally
//
// A restarted trainer resumes from the newest checkpoint; a restarted data loader continues from
// the trainer's position in the data order, so no sample is skipped or seen twice in an epoch.
//
// With run.trainers = N the peer runs N trainers and N data loaders, one per rank. A rank that
// fails takes its whole set down (the others would wait for it in their next sum): the set is
// restarted together from rank 0's newest checkpoint. Rank 0's end is the set's end.
//
// With run.attach the peer also admits trainers of other processes of its machine (`ddactor
// trainer`) through a door on 127.0.0.1 (runtime/attach_listener.hpp). A set never changes while
// it runs: an attached trainer joins the next one (rank 0 checkpoints and stops at the end of its
// epoch, and the set restarts from there with it, its ranks after the peer's own). A set with
// attached trainers that fails restarts at once without them, outside the restart budget (each
// such restart leaves one out); when the run ends they are told so and exit.
//
// With network.listen set the peer is part of a swarm: it also spawns membership (published on
// the listen address), progress and averager, wires them to each other and to the trainer, and
// derives its data order and noise from its stable peer id, so that peers see different batches
// while starting from the same weights.

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <functional>

#include "caf/all.hpp"

#include "config/run_config.hpp"
#include "runtime/message_types.hpp"
#include "runtime/peer_identity.hpp"
#include "runtime/secure/reachability.hpp"
#include "runtime/image_dataset.hpp"
#include "runtime/sd_examples.hpp"

namespace ddactor {

class swarm_status_board;

class link_gateway;

struct peer_options {
  run_config config;
  std::shared_ptr<const image_dataset> train_data;
  /// A latent diffusion model's examples (Stable Diffusion, latent DiT), in place of train_data.
  std::shared_ptr<const sd_example_set> sd_data;
  /// Captions for the sample grid of a caption-conditioned model.
  std::vector<std::string> grid_prompts;
  /// Whether a stop signal came (the trainer cuts long sample grids short).
  std::function<bool()> stop_requested;
  /// What this peer knows of its swarm, written by membership, progress and averager, read by
  /// the status page and `ddactor status` (asked through membership). Null: the peer keeps one
  /// of its own, which `ddactor status` still reads.
  std::shared_ptr<swarm_status_board> status_board;
  /// Swarm mode: this peer's identity (loaded when absent) and its link gateway (null: plain
  /// CAF links, network.encryption = false).
  std::optional<peer_identity> identity;
  std::shared_ptr<link_gateway> gateway;
  /// What the initial peers said of this peer's address and reachability
  /// (runtime/secure/reachability.hpp); the defaults: reachable, at network.listen / announce.
  reachability reach;
};

/// Local only: what the process (signals), membership and the attach door tell the peer.
using peer_actor = caf::typed_actor<
  caf::reacts_to<restart_atom, uint8_t /*child_kind*/>,  // to itself, after a backoff
  caf::reacts_to<stop_atom>,  // checkpoint and quit (a stop signal)
  caf::reacts_to<view_atom, std::vector<swarm_member>>,
  caf::reacts_to<attach_atom, uint64_t /*id*/, uint32_t /*pid*/, std::string /*device*/>,
  caf::reacts_to<leave_atom, uint64_t /*id*/>,
  caf::replies_to<status_atom>::with<supervision_report>>;

/// The swarm a run averages in: network.swarm_id (or run.name), one per DDM expert and one for
/// the router, so that they never average with each other.
std::string swarm_id_of(const run_config& config);

/// Spawns the peer. Send it `stop_atom` to stop cleanly (checkpoint first); it quits normally
/// when training is finished and with an error when a child cannot be kept alive.
/// `(status_atom)` replies with a supervision_report.
peer_actor spawn_peer(caf::actor_system& system, peer_options options);

} // namespace ddactor
