#pragma once
// Every metric ddactor exports, registered in one place so that names, help texts and units stay
// consistent and the Grafana dashboard (monitoring/grafana/ddactor.json) can be checked against
// them. Actors look up the group they update once (cheap references) and then update lock-free
// from their own threads. register_ddactor_metrics() registers all of them when a peer starts,
// with a zero-valued child for every label value known in advance, so that every dashboard panel
// has data (zeros) before the first round, restart or failure.
//
// Thread-safe: the groups hold references into a metrics_registry, whose updates are atomic.

#include <array>
#include <string>
#include <string_view>
#include <vector>

#include "monitoring/metrics_registry.hpp"
#include "monitoring/peer_health.hpp"

namespace ddactor {

/// Label values known in advance. register_ddactor_metrics() creates a zero child for each; the
/// code that updates these families uses the same words (other values still work, they just
/// appear on first use).
namespace metric_label_values {
/// ddactor_averaging_rounds_total{result}
inline constexpr std::array<std::string_view, 4> round_results{"averaged", "alone", "failed",
                                                               "missed"};
/// ddactor_averaging_round_failures_total{reason}: why a round ended without an average.
/// The round failed: "deadline" (the all-reduce missed averaging.allreduce_timeout),
/// "invalid_assignment" (the leader's group did not fit this peer), "group_crashed" (the
/// round's actor died). The peer stepped alone: "no_leader" (no leader reachable),
/// "no_partner" (matchmaking timed out), "leader_refused" (the leader could not take this peer).
/// The swarm averaged without this peer, which takes its state: "missed".
inline constexpr std::array<std::string_view, 7> round_failure_reasons{
  "deadline",   "invalid_assignment", "group_crashed", "no_leader",
  "no_partner", "leader_refused",     "missed"};
/// ddactor_averaging_rejected_chunks_total{reason}: the reasons decided by the group itself
/// (the reduction's accept statuses come on top, on first use).
inline constexpr std::array<std::string_view, 4> chunk_rejection_reasons{"header", "wrong_part",
                                                                          "invalid", "duplicate"};
/// ddactor_averaging_audits_total{verdict}: audits of other reducers' results
/// (runtime/allreduce/reducer_audit.hpp): "passed"; "lied" (the result does not follow from the
/// inputs, or the evidence was refused); "unanswered" (no complete evidence in time);
/// "unconfirmed" (another member's accusation that this peer's own check did not confirm);
/// "forged_proof" (an accusation whose proof did not check out: the accuser's doing);
/// "answered": evidence this peer showed an auditor of its own part.
inline constexpr std::array<std::string_view, 6> audit_verdicts{
  "passed", "lied", "unanswered", "unconfirmed", "forged_proof", "answered"};
/// ddactor_averaging_discarded_rounds_total{result}: rounds an audit proved poisoned after this
/// peer applied them: "discarded" (it went back to its state from before the round), "too_late"
/// (a later round was applied already: kept, the swarm's split repair settles it).
inline constexpr std::array<std::string_view, 2> discard_results{"discarded", "too_late"};
/// ddactor_actor_restarts_total{actor}
inline constexpr std::array<std::string_view, 3> supervised_actors{"trainer", "data_loader",
                                                                    "checkpointer"};
/// ddactor_data_skipped_files_total{reason}
inline constexpr std::array<std::string_view, 4> skipped_file_reasons{
  "unreadable", "missing_caption", "missing_image", "wrong_format"};
/// ddactor_swarm_peers_left_total{reason}: to_string(removal_reason) of runtime/swarm_view.
inline constexpr std::array<std::string_view, 4> peer_removal_reasons{"left", "died", "timeout",
                                                                       "restarted"};
/// ddactor_state_downloads_total{result}
inline constexpr std::array<std::string_view, 2> state_download_results{"ok", "failed"};
/// ddactor_remote_control_refused_total{actor}: actors whose local control messages another
/// node tried to send (actors/local_control.hpp).
inline constexpr std::array<std::string_view, 5> controlled_actors{
  "membership", "progress", "averager", "averaging_group", "state_server"};
/// ddactor_auth_failures_total{reason}: links refused by the gateway (runtime/secure).
/// Six after message_too_large: the relay and probe services (a relay request for a peer with no
/// reservation, an accept for no waiting circuit, a circuit answered by another key than the one
/// asked for, the reservation limit, and service records of an unknown kind or too many of
/// them). "banned": a peer this one banned for misbehaviour (network.ban_time).
inline constexpr std::array<std::string_view, 17> auth_failure_reasons{
  "bad_version",     "wrong_swarm_key",      "bad_signature",   "not_allowlisted",
  "malformed",       "timeout",              "too_many_connections", "frame_too_large",
  "forged_frame",    "message_too_large",    "no_reservation",  "unknown_circuit",
  "wrong_peer",      "too_many_reservations", "unexpected_record", "record_flood",
  "banned"};
/// ddactor_attach_refused_total{reason}: to_string(attach_refusal), connections to the attach
/// port refused (runtime/secure/attach_protocol.hpp).
inline constexpr std::array<std::string_view, 6> attach_refusal_reasons{
  "malformed", "oversized", "wrong_key", "timeout", "busy", "closed"};
} // namespace metric_label_values

/// Trainers of other processes attached to this peer (run.attach, `ddactor trainer`).
struct attach_metrics {
  explicit attach_metrics(metrics_registry& registry);
  gauge& attached;          // ddactor_attached_trainers
  gauge& node_trainers;     // ddactor_node_trainers
  counter_family& refused;  // ddactor_attach_refused_total{reason}
};

/// The link gateway: handshakes, refusals and sealed traffic (runtime/secure/link_gateway).
struct link_metrics {
  explicit link_metrics(metrics_registry& registry);
  counter_family& auth_failures;  // ddactor_auth_failures_total{reason}
  counter& handshakes;            // ddactor_link_handshakes_total
  gauge& links;                   // ddactor_links
  counter& bytes_sent;            // ddactor_link_bytes_total{direction="sent"}
  counter& bytes_received;        // ddactor_link_bytes_total{direction="received"}
  counter& relayed_bytes;         // ddactor_link_relayed_bytes_total
  counter& circuits;              // ddactor_link_relay_circuits_total
  gauge& reservations;            // ddactor_link_relay_reservations
  counter& silent_closed;         // ddactor_link_silent_closed_total
};

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
  counter& overlapped_samples;   // ddactor_training_overlapped_samples_total
  counter& steps_ahead;          // ddactor_training_steps_ahead_total
  gauge& guess_along;            // ddactor_training_step_ahead_along
  gauge& guess_off;              // ddactor_training_step_ahead_off
  counter& out_of_memory;        // ddactor_training_out_of_memory_total
  counter& skipped_steps;        // ddactor_training_skipped_steps_total
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
  gauge& failing;                // ddactor_checkpoint_failing: 1 while a due checkpoint is unsaved
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
  counter_family& round_failures;  // ddactor_averaging_round_failures_total{reason}
  histogram& round_seconds;        // ddactor_averaging_round_duration_seconds
  gauge& group_size;               // ddactor_averaging_group_size
  counter& bytes_sent;             // ddactor_averaging_sent_bytes_total
  counter& bytes_received;         // ddactor_averaging_received_bytes_total
  gauge& compression_ratio;        // ddactor_averaging_compression_ratio
  counter& restarts;               // ddactor_averaging_restarts_total
  counter_family& rejected_chunks; // ddactor_averaging_rejected_chunks_total{reason}
  counter& clipped_weights;        // ddactor_averaging_clipped_weights_total
  counter& digest_mismatches;      // ddactor_averaging_digest_mismatches_total
  counter& split_repairs;          // ddactor_swarm_split_repairs_total
  counter& unsettled_finishes;     // ddactor_swarm_unsettled_finishes_total
  counter& unvouched_epochs;       // ddactor_swarm_unvouched_epochs_total
  counter& unvouched_states;       // ddactor_state_unvouched_total
  counter& silent_leaders;         // ddactor_averaging_silent_leaders_total
  counter& unproven_assignments;   // ddactor_averaging_unproven_assignments_total
  counter& banned_peers;           // ddactor_averaging_banned_peers_total
  gauge& banned_now;               // ddactor_averaging_banned_peers
  counter_family& audits;          // ddactor_averaging_audits_total{verdict}
  counter_family& discarded_rounds; // ddactor_averaging_discarded_rounds_total{result}
  gauge& epoch;                    // ddactor_swarm_epoch
  gauge& swarm_samples_per_second; // ddactor_swarm_samples_per_second
  gauge& swarm_epoch_progress;     // ddactor_swarm_epoch_samples
  gauge_family& link_rate;         // ddactor_averaging_link_rate_bytes_per_second{direction}
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
  /// ddactor_remote_control_refused_total{actor}: local control messages from another node.
  counter_family& remote_control_refused;
};

/// Seconds since the Unix epoch, for *_timestamp_seconds gauges.
double unix_time_seconds();

/// Registers every family above (training, data, checkpoint, supervision, swarm, averaging,
/// state transfer) with a zero child for each value in metric_label_values, and sets
/// ddactor_build_info{version} to 1. Call once before a peer's actors start; calling it again
/// changes nothing.
void register_ddactor_metrics(metrics_registry& registry);

/// Sets ddactor_peer_info{peer_id, swarm_id, version} to 1 (swarm peers, once their identity is
/// known), so that dashboards can map a scrape target to its peer id.
void set_peer_info(metrics_registry& registry, const std::string& peer_id,
                   const std::string& swarm_id);

/// ddactor_checkpoint_age_seconds, computed on each scrape: seconds since the last checkpoint
/// this process wrote (ddactor_checkpoint_last_success_timestamp_seconds), or since
/// `baseline_unix_seconds` before the first one (the newest checkpoint found at start, or the
/// start itself). The series lives as long as the returned registration.
callback_gauge_registration register_checkpoint_age(metrics_registry& registry,
                                                    double baseline_unix_seconds);

/// ddactor_peer_activity{activity}, computed on each scrape: 1 for what `health` reports now
/// (the /healthz status: training, averaging, downloading_state, failing, ...), 0 for the other
/// activities. `health` must outlive the returned registrations.
std::vector<callback_gauge_registration> register_peer_activity(metrics_registry& registry,
                                                                const peer_health& health);

} // namespace ddactor
