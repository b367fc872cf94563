// Registration of ddactor's metrics; see ddactor_metrics.hpp.
#include "monitoring/ddactor_metrics.hpp"

#include <chrono>

namespace ddactor {

training_metrics::training_metrics(metrics_registry& r)
  : steps(r.counter("ddactor_training_steps_total", "Optimizer steps taken by this peer.").with()),
    samples(r.counter("ddactor_training_samples_total",
                      "Training samples processed by this peer.")
              .with()),
    step(r.gauge("ddactor_training_step", "The current optimizer step.").with()),
    loss(r.gauge("ddactor_training_loss", "Mean flow-matching loss of the last step.").with()),
    learning_rate(r.gauge("ddactor_training_learning_rate", "Learning rate of the last step.")
                    .with()),
    samples_per_second(r.gauge("ddactor_training_samples_per_second",
                               "This peer's training throughput over the last log window.")
                         .with()),
    step_seconds(r.histogram("ddactor_training_step_duration_seconds",
                             "Wall time of one training step (forward, backward, update).", {},
                             exponential_buckets(0.005, 2.0, 14))
                   .with()),
    failures(r.counter("ddactor_training_failures_total",
                       "Training steps that failed (exception or non-finite loss).")
               .with()) {}

data_metrics::data_metrics(metrics_registry& r)
  : batches(r.counter("ddactor_data_batches_total", "Batches produced by the data loader.")
              .with()),
    batches_in_flight(r.gauge("ddactor_data_batches_in_flight",
                              "Batches sent to the trainer and not yet consumed (queue depth).")
                        .with()),
    epoch(r.gauge("ddactor_data_epoch", "The epoch of the local data order.").with()),
    skipped_files(r.counter("ddactor_data_skipped_files_total",
                            "Data files skipped while loading, by reason.", {"reason"})) {}

checkpoint_metrics::checkpoint_metrics(metrics_registry& r)
  : written(r.counter("ddactor_checkpoints_written_total", "Checkpoints written to disk.").with()),
    failed(r.counter("ddactor_checkpoint_failures_total", "Checkpoints that could not be written.")
             .with()),
    last_success(r.gauge("ddactor_checkpoint_last_success_timestamp_seconds",
                         "Unix time of the last checkpoint written.")
                   .with()),
    bytes(r.gauge("ddactor_checkpoint_size_bytes", "Size of the last checkpoint written.").with()),
    write_seconds(r.histogram("ddactor_checkpoint_write_duration_seconds",
                              "Time to write one checkpoint atomically.", {},
                              exponential_buckets(0.01, 2.0, 12))
                    .with()) {}

supervision_metrics::supervision_metrics(metrics_registry& r)
  : restarts(r.counter("ddactor_actor_restarts_total",
                       "Restarts of supervised actors after a failure, by actor.", {"actor"})) {}

double unix_time_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch())
    .count();
}

} // namespace ddactor
