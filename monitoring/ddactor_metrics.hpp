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

/// Averaging rounds (matchmaking and all-reduce).
struct averaging_metrics {
  explicit averaging_metrics(metrics_registry& registry);
  counter_family& rounds;          // ddactor_averaging_rounds_total{result}
  histogram& round_seconds;        // ddactor_averaging_round_duration_seconds
  gauge& group_size;               // ddactor_averaging_group_size
  counter& bytes_sent;             // ddactor_averaging_sent_bytes_total
  counter& bytes_received;         // ddactor_averaging_received_bytes_total
  gauge& compression_ratio;        // ddactor_averaging_compression_ratio
  counter& restarts;               // ddactor_averaging_restarts_total
  counter_family& rejected_chunks; // ddactor_averaging_rejected_chunks_total{reason}
  counter& digest_mismatches;      // ddactor_averaging_digest_mismatches_total
  gauge& epoch;                    // ddactor_swarm_epoch
  gauge& swarm_samples_per_second; // ddactor_swarm_samples_per_second
  gauge& swarm_epoch_progress;     // ddactor_swarm_epoch_samples
};

/// Transfers of the shared training state to late joiners (actors/state_server, state_download).
struct state_transfer_metrics {
  explicit state_transfer_metrics(metrics_registry& registry);
  counter& downloads_ok;         // ddactor_state_downloads_total{result="ok"}
  counter& downloads_failed;     // ddactor_state_downloads_total{result="failed"}
  counter& download_bytes;       // ddactor_state_download_bytes_total (accepted chunk bytes)
  counter& resumes;              // ddactor_state_download_resumes_total
  counter& served_chunks;        // ddactor_state_served_chunks_total
  counter& rejected_chunks;      // ddactor_state_rejected_chunks_total
  histogram& download_seconds;   // ddactor_state_download_duration_seconds
};

/// The swarm view kept by the membership actor.
struct swarm_metrics {
  explicit swarm_metrics(metrics_registry& registry);
  gauge& peers;                  // ddactor_swarm_peers (view size, this peer included)
  counter& joined;               // ddactor_swarm_peers_joined_total
  counter_family& left;          // ddactor_swarm_peers_left_total{reason}
  counter& suspected;            // ddactor_swarm_peers_suspected_total
  counter& splits;               // ddactor_swarm_splits_detected_total
  counter_family& rejected;      // ddactor_swarm_rejected_messages_total{reason}
};

/// Seconds since the Unix epoch, for *_timestamp_seconds gauges.
double unix_time_seconds();

} // namespace ddactor
