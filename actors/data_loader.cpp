// The data_loader actor; see data_loader.hpp for its protocol.
#include "actors/data_loader.hpp"

#include <spdlog/spdlog.h>

#include "monitoring/ddactor_metrics.hpp"
#include "runtime/bucketed_order.hpp"
#include "runtime/data_order.hpp"
#include "runtime/training_batch_slice.hpp"

namespace ddactor {

namespace {

struct data_loader_state {
  data_loader_options options;
  std::unique_ptr<shuffled_order> order;
  std::unique_ptr<bucketed_order> buckets;  // for sd_data
  batch_sink_actor sink;
  data_cursor cursor;
  int32_t credits = 0;
  int64_t produced = 0;
  int64_t in_flight = 0;  // sent and not yet credited back
  data_metrics metrics{global_metrics()};
  static inline const char* name = "data_loader";
};

using loader_pointer = data_loader_actor::stateful_pointer<data_loader_state>;

int64_t example_count(const data_loader_options& options) {
  return options.sd_data ? options.sd_data->count() : options.data->count;
}

// With several trainers the node's batch (batch_size x shards, or a bucket's shorter tail) is
// cut into near-equal shards; a tail shorter than the shard count leaves some shards empty.
std::shared_ptr<const training_batch> make_bucketed_batch(data_loader_state& st) {
  const auto indices = st.buckets->next_batch(st.cursor);
  auto node_batch = make_sd_batch(*st.options.sd_data, indices);
  const int64_t n = node_batch.count, shards = st.options.shards, shard = st.options.shard;
  auto batch = std::make_shared<training_batch>(
    shards == 1 ? std::move(node_batch)
                : slice_of_batch(node_batch, shard * n / shards,
                                 (shard + 1) * n / shards - shard * n / shards));
  batch->epoch_after = st.cursor.epoch;
  batch->position_after = st.cursor.position;
  batch->loader_generation = st.options.generation;
  return batch;
}

std::shared_ptr<const training_batch> make_batch(data_loader_state& st) {
  if (st.options.sd_data)
    return make_bucketed_batch(st);
  const auto& data = *st.options.data;
  const int64_t per_shard = st.options.batch_size;
  auto indices = st.order->next_batch(st.cursor, per_shard * st.options.shards);
  if (st.options.shards > 1)
    indices = std::vector<int64_t>(indices.begin() + st.options.shard * per_shard,
                                   indices.begin() + (st.options.shard + 1) * per_shard);
  auto batch = std::make_shared<training_batch>(batch_of(data, indices));
  if (st.options.shards > 1) {
    batch->node_offset = st.options.shard * per_shard;
    batch->node_count = per_shard * st.options.shards;
  }
  batch->epoch_after = st.cursor.epoch;
  batch->position_after = st.cursor.position;
  batch->loader_generation = st.options.generation;
  return batch;
}

// Sends as many batches as there are credits.
void produce(loader_pointer self) {
  auto& st = self->state;
  while (st.credits > 0 && st.sink) {
    if (st.options.crash_after_batches > 0 && st.produced == st.options.crash_after_batches)
      throw std::runtime_error("injected data loader crash (debug.crash_loader_after_batches)");
    self->send(st.sink, batch_message{make_batch(st)});
    --st.credits;
    ++st.produced;
    ++st.in_flight;
    st.metrics.batches.inc();
    st.metrics.batches_in_flight.set(static_cast<double>(st.in_flight));
    st.metrics.epoch.set(static_cast<double>(st.cursor.epoch));
  }
}

data_loader_actor::behavior_type data_loader(loader_pointer self, data_loader_options options) {
  auto& st = self->state;
  st.options = std::move(options);
  if (st.options.sd_data)
    st.buckets = std::make_unique<bucketed_order>(
      st.options.sd_data->bucket_of(), st.options.batch_size * st.options.shards, st.options.seed);
  else
    st.order = std::make_unique<shuffled_order>(st.options.data->count, st.options.seed);
  return {
    [=](fetch_atom, batch_sink_actor sink, int64_t epoch, int64_t position, int32_t credits) {
      auto& st = self->state;
      st.sink = std::move(sink);
      st.cursor = {epoch, position % std::max<int64_t>(example_count(st.options), 1)};
      st.credits = credits;
      st.in_flight = 0;
      produce(self);
    },
    [=](credit_atom, int32_t n) {
      auto& st = self->state;
      st.credits += n;
      st.in_flight = std::max<int64_t>(0, st.in_flight - n);
      st.metrics.batches_in_flight.set(static_cast<double>(st.in_flight));
      produce(self);
    },
  };
}

} // namespace

data_loader_actor spawn_data_loader(caf::actor_system& system, data_loader_options options) {
  if (options.sd_data ? options.sd_data->count() == 0 : !options.data || options.data->count == 0)
    throw std::invalid_argument("data loader needs a non-empty data set");
  if (options.shards < 1 || options.shard < 0 || options.shard >= options.shards)
    throw std::invalid_argument("data loader: shard " + std::to_string(options.shard) + " of " +
                                std::to_string(options.shards));
  return system.spawn<caf::detached>(data_loader, std::move(options));
}

} // namespace ddactor
