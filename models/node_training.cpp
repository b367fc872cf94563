// Rank 0's state to every rank, and the node's sum of accumulations; see node_training.hpp.
#include "models/node_training.hpp"

namespace ddactor {

void share_training_state(node_reducer& reducer, model_trainer& trainer,
                          training_progress& progress) {
  if (reducer.ranks() == 1)
    return;
  torch::NoGradGuard no_grad;
  auto counters = torch::tensor({trainer.step(), trainer.optimizer().step_count(), progress.step,
                                 progress.epoch, progress.data_epoch, progress.data_position},
                                torch::kInt64);
  reducer.broadcast_(counters, 0);
  trainer.set_step(counters[0].item<int64_t>());
  trainer.optimizer().set_step_count(counters[1].item<int64_t>());
  progress = {counters[2].item<int64_t>(), counters[3].item<int64_t>(),
              counters[4].item<int64_t>(), counters[5].item<int64_t>()};
  // Handles share storage with the trainer's flat buffers: broadcasting into them sets them.
  auto values = trainer.parameters().values();
  reducer.broadcast_(values, 0);
  if (trainer.has_ema()) {
    auto ema = trainer.ema_parameters().values();
    reducer.broadcast_(ema, 0);
  }
  reducer.broadcast_(trainer.optimizer().exp_avg(), 0);
  reducer.broadcast_(trainer.optimizer().exp_avg_sq(), 0);
  if (trainer.optimizer().pending_rounds().defined())  // sparse catch-up only
    reducer.broadcast_(trainer.optimizer().pending_rounds(), 0);
  auto random_stream = trainer.rng_state().clone();
  reducer.broadcast_(random_stream, 0);
  trainer.set_rng_state(random_stream);
}

void share_outer_state(node_reducer& reducer, outer_nesterov& outer) {
  if (reducer.ranks() == 1)
    return;
  auto anchor = outer.anchor().clone();
  auto momentum = outer.momentum().clone();
  reducer.broadcast_(anchor, 0);
  reducer.broadcast_(momentum, 0);
  outer.load(anchor, momentum);
}

void sum_node_accumulation(node_reducer& reducer, model_trainer& trainer) {
  if (reducer.ranks() == 1)
    return;
  trainer.sum_accumulation([&](torch::Tensor& tensor) { reducer.sum_(tensor); });
}

} // namespace ddactor
