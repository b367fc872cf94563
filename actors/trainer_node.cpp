// Several trainers in one peer (run.trainers > 1): the node's vote on the end of a lone peer's
// run, and in a swarm rank 0's commands (node_command) and the other ranks that follow them, so
// that every rank holds the same state.
#include <spdlog/spdlog.h>

#include <cmath>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <utility>

#include "actors/trainer_state.hpp"
#include "models/device_transfer.hpp"
#include "models/node_training.hpp"
#include "models/readable_error.hpp"
#include "runtime/errors.hpp"
#include "runtime/state_agreement.hpp"

namespace ddactor::trainer_internal {

namespace {

// Identical replicas have identical digests; checked once per round, before the node's sum.
int64_t weights_digest(model_trainer& model) {
  const auto weights = on_host(model.parameters().values());
  return static_cast<int64_t>(
    state_digest_of({weights.data_ptr<float>(), static_cast<size_t>(weights.numel())}));
}

} // namespace

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
    if (st.sent_parameters.defined())
      st.outer->step_keeping_progress(values, params, st.sent_parameters);
    else
      st.outer->step(values, params);
    st.sent_parameters = torch::Tensor();
  }
  return std::nullopt;
}

// The round of this epoch starts, the same on every rank of a node: DiLoCo with overlap keeps
// the parameters its pseudo-gradient came from (one copy of the weights), for the outcome.
void keep_sent_parameters(trainer_state& st) {
  if (averaging_mode(st) == "diloco" && overlapping(st))
    st.sent_parameters = st.model->parameters().values().detach().clone();
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

// Several trainers in one peer: rank 0 says whether the run ends after this step (its clock
// alone counts for train.max_seconds), so that every rank stops at the same step.
bool node_ends_here(trainer_state& st) {
  auto vote = torch::tensor({st.options.rank == 0 && reached_limit(st) ? 1 : 0}, torch::kInt32);
  st.node->sum_(vote);
  return vote.item<int32_t>() > 0;
}

// --- a rank > 0 of a swarm peer --------------------------------------------------------------

namespace {

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
        check_injected_faults(st, *batch);
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
        keep_sent_parameters(st);
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
        st.sent_parameters = torch::Tensor();
        share_node_state(st);
        break;
      case node_command::roll_back:
        st.sent_parameters = torch::Tensor();
        share_node_state(st);
        break;
      case node_command::stop:
        st.finishing = true;
        self->quit();
        return;
    }
  }
}

} // namespace

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
    self->quit(step_failure(st, e));
  }
}

} // namespace ddactor::trainer_internal
