#pragma once
// Every metric ddactor exports, registered in one place so that names, help texts and units stay
// consistent and the Grafana dashboard can be checked against them. Actors look up the group
// they update once (cheap references) and then update lock-free from their own threads.
//
// Thread-safe: the groups hold references into a metrics_registry, whose updates are atomic.

#include "monitoring/metrics_registry.hpp"

namespace ddactor {

/// The trainer's progress.
struct training_metrics {
  explicit training_metrics(metrics_registry& registry);
  counter& steps;                // ddactor_training_steps_total
  counter& samples;              // ddactor_training_samples_total
  gauge& step;                   // ddactor_training_step
  gauge& loss;                   // ddactor_training_loss
  gauge& learning_rate;          // ddactor_training_learning_rate
  gauge& samples_per_second;     // ddactor_training_samples_per_second
  histogram& step_seconds;       // ddactor_training_step_duration_seconds
  counter& failures;             // ddactor_training_failures_total
};

/// The data loader.
struct data_metrics {
  explicit data_metrics(metrics_registry& registry);
  counter& batches;              // ddactor_data_batches_total
  gauge& batches_in_flight;      // ddactor_data_batches_in_flight
  gauge& epoch;                  // ddactor_data_epoch
  counter_family& skipped_files; // ddactor_data_skipped_files_total{reason}
};

/// Checkpoints written by the checkpointer.
struct checkpoint_metrics {
  explicit checkpoint_metrics(metrics_registry& registry);
  counter& written;              // ddactor_checkpoints_written_total
  counter& failed;               // ddactor_checkpoint_failures_total
  gauge& last_success;           // ddactor_checkpoint_last_success_timestamp_seconds
  gauge& bytes;                  // ddactor_checkpoint_size_bytes
  histogram& write_seconds;      // ddactor_checkpoint_write_duration_seconds
};

/// The peer's supervision of its actors.
struct supervision_metrics {
  explicit supervision_metrics(metrics_registry& registry);
  counter_family& restarts;      // ddactor_actor_restarts_total{actor}
};

/// Seconds since the Unix epoch, for *_timestamp_seconds gauges.
double unix_time_seconds();

} // namespace ddactor
