#pragma once
// The data_loader actor: turns an in-memory data set into shuffled batches for one trainer, off the
// training thread, with credit-based flow control.
//
//   trainer --(fetch, sink, epoch, position, credits)--> data_loader   reset order and credits
//   data_loader --(batch_message)--> sink                               one credit each
//   trainer --(credit, n)--> data_loader                                after consuming batches
//
// So at most `credits` batches are ever queued at the trainer (the prefetch depth), and the
// order is a pure function of (seed, epoch, position): a restarted loader continues exactly where
// the trainer's checkpoint says.
//
// A latent diffusion model's examples (an sd_example_set) are batched one bucket at a time
// (runtime/bucketed_order.hpp); cached ones are read from their latent cache entries here, off
// the training thread.

#include <memory>

#include "caf/all.hpp"

#include "config/run_config.hpp"
#include "runtime/image_dataset.hpp"
#include "runtime/message_types.hpp"
#include "runtime/sd_examples.hpp"

namespace ddactor {

/// Anything that takes batches (the trainer).
using batch_sink_actor = caf::typed_actor<caf::reacts_to<batch_message>>;

using data_loader_actor = caf::typed_actor<
  caf::reacts_to<fetch_atom, batch_sink_actor, int64_t /*epoch*/, int64_t /*position*/,
                 int32_t /*credits*/>,
  caf::reacts_to<credit_atom, int32_t>>;

struct data_loader_options {
  /// The images to batch, unless sd_data is set.
  std::shared_ptr<const image_dataset> data;
  int batch_size = 64;
  uint64_t seed = 0;
  /// Stamped on every batch so the trainer can drop batches of a loader that was replaced.
  uint64_t generation = 0;
  /// Fault injection for supervision tests: throw after this many batches (0: never).
  int64_t crash_after_batches = 0;
  /// When set, the examples of a latent diffusion model to batch instead of `data`.
  std::shared_ptr<const sd_example_set> sd_data;
  /// Several trainers in one peer: the node's batch is shards x batch_size examples of the
  /// order, and this loader hands trainer `shard` its slice (images only, not sd_data). Every
  /// shard's loader walks the same order, so their positions agree after every batch.
  int shard = 0;
  int shards = 1;
};

/// Spawns a detached data loader (batching never runs on CAF's scheduler threads).
data_loader_actor spawn_data_loader(caf::actor_system& system, data_loader_options options);

} // namespace ddactor
