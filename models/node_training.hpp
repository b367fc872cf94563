#pragma once
// What keeps the trainers of one node identical replicas (as PyTorch's DDP does): they start
// from rank 0's state, and each step sums their accumulations before every rank takes the same
// optimizer step (model_trainer::sum_accumulation through a node_reducer).
//
// In a swarm averaging parameters or DiLoCo pseudo-gradients, every local step is such a node
// step, and each rank applies the round's outcome itself; DiLoCo's outer optimizer state is
// then shared state of the node too (share_outer_state).
//
// The ranks may restore different checkpoints when they start (rank 0 of the set before may
// have written a newer one between two ranks' reads), so rank 0's state wins, copied whole.
//
// Called on each trainer's own thread, by every rank of the node at the same point.

#include "models/checkpoint.hpp"
#include "models/model_trainer.hpp"
#include "models/node_reducer.hpp"
#include "models/outer_optimizer.hpp"

namespace ddactor {

/// Copies rank 0's weights, EMA, optimizer state, step, random stream and data position to
/// every rank.
void share_training_state(node_reducer& reducer, model_trainer& trainer,
                          training_progress& progress);

/// Copies rank 0's DiLoCo anchor and outer momentum to every rank.
void share_outer_state(node_reducer& reducer, outer_nesterov& outer);

/// Sums the node's accumulations into every rank's trainer (see sum_accumulation).
void sum_node_accumulation(node_reducer& reducer, model_trainer& trainer);

} // namespace ddactor
