// Registration of ddactor's metrics; see ddactor_metrics.hpp.
#include "monitoring/ddactor_metrics.hpp"

#include <algorithm>
#include <chrono>

#include "runtime/version.hpp"

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
               .with()),
    overlapped_samples(
      r.counter("ddactor_training_overlapped_samples_total",
                "Samples trained while this peer's previous epoch was being averaged "
                "(averaging.overlap): in gradients mode on weights one update old, or one own "
                "step ahead (averaging.step_ahead); in DiLoCo mode their inner steps stay on top "
                "of the new anchor.")
        .with()),
    steps_ahead(
      r.counter("ddactor_training_steps_ahead_total",
                "Rounds during which this peer trained on the weights after a step with its own "
                "gradient (averaging.step_ahead), taken back when the swarm's average arrived.")
        .with()),
    guess_along(r.gauge("ddactor_training_step_ahead_along",
                        "How far the last step ahead went along the swarm's step, as a fraction "
                        "of it (1: as far), on a sample of the weights.")
                  .with()),
    guess_off(r.gauge("ddactor_training_step_ahead_off",
                      "How far the weights after the last step ahead were from the swarm's, in "
                      "swarm steps (0: exact; about 0.5 cost 1% loss in ddactor_staleness_bench).")
                .with()),
    out_of_memory(r.counter("ddactor_training_out_of_memory_total",
                            "Training steps that ran out of memory; the trainer restarted with "
                            "half the micro-batch (data.micro_batch_size).")
                    .with()),
    skipped_steps(r.counter("ddactor_training_skipped_steps_total",
                            "Optimizer steps skipped because the gradient overflowed (fp16 loss "
                            "scaling); the loss scale backed off.")
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
                    .with()),
    failing(r.gauge("ddactor_checkpoint_failing",
                    "1 while a checkpoint that is due could not be written (retried with backoff).")
              .with()) {}

supervision_metrics::supervision_metrics(metrics_registry& r)
  : restarts(r.counter("ddactor_actor_restarts_total",
                       "Restarts of supervised actors after a failure, by actor.", {"actor"})) {}

averaging_metrics::averaging_metrics(metrics_registry& r)
  : rounds(r.counter("ddactor_averaging_rounds_total",
                     "Averaging rounds by result: averaged, alone (no partner in time), failed.",
                     {"result"})),
    round_failures(r.counter("ddactor_averaging_round_failures_total",
                             "Averaging rounds that ended without an average, by reason: "
                             "deadline, invalid_assignment, group_crashed (failed); no_leader, "
                             "no_partner, leader_refused (stepped alone).",
                             {"reason"})),
    round_seconds(r.histogram("ddactor_averaging_round_duration_seconds",
                              "Time from joining a round to its result (matchmaking included).",
                              {}, exponential_buckets(0.05, 2.0, 14))
                    .with()),
    group_size(r.gauge("ddactor_averaging_group_size", "Members of the last averaging group.")
                 .with()),
    bytes_sent(r.counter("ddactor_averaging_sent_bytes_total",
                         "Payload bytes this peer sent in all-reduce chunks.")
                 .with()),
    bytes_received(r.counter("ddactor_averaging_received_bytes_total",
                             "Payload bytes this peer received in all-reduce chunks.")
                     .with()),
    compression_ratio(r.gauge("ddactor_averaging_compression_ratio",
                              "Bytes on the wire / float32 bytes in the last round (1 = none).")
                        .with()),
    restarts(r.counter("ddactor_averaging_restarts_total",
                       "All-reduce restarts because a member failed mid-round.")
               .with()),
    rejected_chunks(r.counter("ddactor_averaging_rejected_chunks_total",
                              "All-reduce chunks rejected by validation, by reason.",
                              {"reason"})),
    clipped_weights(r.counter("ddactor_averaging_clipped_weights_total",
                              "Group members whose claimed weight exceeded "
                              "averaging.max_weight_ratio x the group's median and was clipped.")
                      .with()),
    digest_mismatches(r.counter("ddactor_averaging_digest_mismatches_total",
                                "Rounds whose members ended with different results.")
                        .with()),
    split_repairs(r.counter("ddactor_swarm_split_repairs_total",
                            "Times this peer's weights differed from those most peers of its "
                            "epoch hold (split groups) and it took theirs.")
                    .with()),
    unsettled_finishes(r.counter("ddactor_swarm_unsettled_finishes_total",
                                 "Runs this peer ended with final weights that not every peer "
                                 "reported as theirs within the settling wait.")
                         .with()),
    unvouched_epochs(r.counter("ddactor_swarm_unvouched_epochs_total",
                               "Epochs past this peer's that a peer claimed and no quorum of "
                               "peers vouched for (averaging.state_quorum): ignored.")
                       .with()),
    unvouched_states(r.counter("ddactor_state_unvouched_total",
                               "Downloaded states refused because no quorum of peers vouched "
                               "for their epoch and weights (averaging.state_quorum).")
                       .with()),
    silent_leaders(r.counter("ddactor_averaging_silent_leaders_total",
                             "Matchmaking leaders that took this peer's join and never answered "
                             "(then skipped for 20 epochs).")
                     .with()),
    unproven_assignments(r.counter("ddactor_averaging_unproven_assignments_total",
                                   "Round assignments refused because the leader this peer "
                                   "joined did not sign them (then skipped for 20 epochs).")
                           .with()),
    banned_peers(r.counter("ddactor_averaging_banned_peers_total",
                           "Bans this peer imposed: peers whose misbehaviour (invalid or unsigned "
                           "chunks, results an audit disproved, unanswered audits, unsigned "
                           "assignments) reached the ban score; left out of its rounds for "
                           "network.ban_time.")
                   .with()),
    banned_now(r.gauge("ddactor_averaging_banned_peers", "Peers this peer has banned now.")
                 .with()),
    audits(r.counter("ddactor_averaging_audits_total",
                     "Audits of reducers' results (reducer_audit.hpp), by verdict; 'answered': "
                     "evidence shown to auditors of this peer's part.",
                     {"verdict"})),
    discarded_rounds(r.counter("ddactor_averaging_discarded_rounds_total",
                               "Rounds an audit proved poisoned after this peer applied them: "
                               "'discarded' (back to the state from before the round) or "
                               "'too_late' (a later round was applied already).",
                               {"result"})),
    epoch(r.gauge("ddactor_swarm_epoch", "The swarm's global epoch as this peer sees it.").with()),
    swarm_samples_per_second(r.gauge("ddactor_swarm_samples_per_second",
                                     "Estimated training throughput of the whole swarm.")
                               .with()),
    swarm_epoch_progress(r.gauge("ddactor_swarm_epoch_samples",
                                 "Estimated samples the swarm accumulated in this epoch.")
                           .with()),
    link_rate(r.gauge("ddactor_averaging_link_rate_bytes_per_second",
                      "This peer's link rate as its rounds measured it (upload, download) and as "
                      "it reports it to leaders (used: averaging.bandwidth or the smaller one).",
                      {"direction"})) {}

state_transfer_metrics::state_transfer_metrics(metrics_registry& r)
  : downloads_ok(r.counter("ddactor_state_downloads_total",
                           "Downloads of the shared training state, by result.", {"result"})
                   .with({"ok"})),
    downloads_failed(r.counter("ddactor_state_downloads_total",
                               "Downloads of the shared training state, by result.", {"result"})
                       .with({"failed"})),
    download_bytes(r.counter("ddactor_state_download_bytes_total",
                             "Bytes of verified state chunks downloaded from peers.")
                     .with()),
    resumes(r.counter("ddactor_state_download_resumes_total",
                      "State downloads that went on from another peer with the chunks they had.")
              .with()),
    served_chunks(r.counter("ddactor_state_served_chunks_total",
                            "State chunks served to peers that join late.")
                    .with()),
    rejected_chunks(r.counter("ddactor_state_rejected_chunks_total",
                              "Downloaded state chunks refused (checksum, size, index or digest).")
                      .with()),
    download_seconds(r.histogram("ddactor_state_download_duration_seconds",
                                 "Wall time of one state download, successful or not.", {},
                                 exponential_buckets(0.05, 2.0, 16))
                       .with()) {}

swarm_metrics::swarm_metrics(metrics_registry& r)
  : peers(r.gauge("ddactor_swarm_peers", "Peers in this peer's swarm view, itself included.")
            .with()),
    joined(r.counter("ddactor_swarm_peers_joined_total", "Peers that entered the swarm view.")
             .with()),
    left(r.counter("ddactor_swarm_peers_left_total",
                   "Peers removed from the swarm view, by reason: left, died, timeout, restarted.",
                   {"reason"})),
    suspected(r.counter("ddactor_swarm_peers_suspected_total",
                        "Times a peer was suspected after missing heartbeats.")
                .with()),
    splits(r.counter("ddactor_swarm_splits_detected_total",
                     "Merges of two groups of peers that did not know each other.")
             .with()),
    rejected(r.counter("ddactor_swarm_rejected_messages_total",
                       "Membership messages from the network rejected by validation, by reason.",
                       {"reason"})),
    remote_control_refused(r.counter(
      "ddactor_remote_control_refused_total",
      "Local control messages (attach, view, tick, timeout, ...) sent from another node and "
      "refused, by receiving actor.",
      {"actor"})) {}

attach_metrics::attach_metrics(metrics_registry& r)
  : attached(r.gauge("ddactor_attached_trainers",
                     "Trainers of other processes attached to this peer (`ddactor trainer`).")
               .with()),
    node_trainers(r.gauge("ddactor_node_trainers",
                          "Trainers in this peer's current set: its own and attached ones.")
                    .with()),
    refused(r.counter("ddactor_attach_refused_total",
                      "Connections to the attach port refused, by reason (not this protocol, "
                      "a frame too long, a wrong key, a handshake too slow, too many at once, "
                      "closed during the handshake).",
                      {"reason"})) {}

link_metrics::link_metrics(metrics_registry& r)
  : auth_failures(r.counter("ddactor_auth_failures_total",
                            "Connections refused or ended by the link gateway, by reason "
                            "(handshake failures, limits, forged or oversized frames).",
                            {"reason"})),
    handshakes(r.counter("ddactor_link_handshakes_total",
                         "Links whose mutual handshake succeeded.")
                 .with()),
    links(r.gauge("ddactor_links", "Links the gateway holds (handshaking or open).").with()),
    bytes_sent(r.counter("ddactor_link_bytes_total",
                         "Sealed bytes the gateway sent and received on the network.",
                         {"direction"})
                 .with({"sent"})),
    bytes_received(r.counter("ddactor_link_bytes_total",
                             "Sealed bytes the gateway sent and received on the network.",
                             {"direction"})
                     .with({"received"})),
    relayed_bytes(r.counter("ddactor_link_relayed_bytes_total",
                            "Bytes this peer carried as a relay between two other peers (one "
                            "of which cannot accept connections).")
                    .with()),
    circuits(r.counter("ddactor_link_relay_circuits_total",
                       "Links this peer spliced as a relay between two other peers.")
               .with()),
    reservations(r.gauge("ddactor_link_relay_reservations",
                         "Peers behind NAT that keep a reservation at this peer's relay.")
                   .with()),
    silent_closed(r.counter("ddactor_link_silent_closed_total",
                            "Links the gateway closed because nothing arrived and nothing sent "
                            "was acknowledged for network.remove_after plus two round trips "
                            "(a peer gone or cut off).")
                    .with()) {}

double unix_time_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch())
    .count();
}

namespace {

template <size_t N>
void create_children(counter_family& family, const std::array<std::string_view, N>& values) {
  for (auto value : values)
    family.with({std::string(value)});
}

constexpr std::array all_activities{
  peer_health::activity::starting,  peer_health::activity::waiting_for_peers,
  peer_health::activity::training,  peer_health::activity::averaging,
  peer_health::activity::downloading_state, peer_health::activity::stopping,
  peer_health::activity::finished,  peer_health::activity::failing,
};

} // namespace

void register_ddactor_metrics(metrics_registry& registry) {
  namespace labels = metric_label_values;
  training_metrics{registry};
  data_metrics data{registry};
  create_children(data.skipped_files, labels::skipped_file_reasons);
  checkpoint_metrics{registry};
  supervision_metrics supervision{registry};
  create_children(supervision.restarts, labels::supervised_actors);
  averaging_metrics averaging{registry};
  create_children(averaging.rounds, labels::round_results);
  create_children(averaging.round_failures, labels::round_failure_reasons);
  create_children(averaging.rejected_chunks, labels::chunk_rejection_reasons);
  create_children(averaging.audits, labels::audit_verdicts);
  create_children(averaging.discarded_rounds, labels::discard_results);
  state_transfer_metrics{registry};  // both results are children already
  swarm_metrics swarm{registry};
  create_children(swarm.left, labels::peer_removal_reasons);
  create_children(swarm.remote_control_refused, labels::controlled_actors);
  link_metrics links{registry};
  create_children(links.auth_failures, labels::auth_failure_reasons);
  attach_metrics attach{registry};
  create_children(attach.refused, labels::attach_refusal_reasons);
  registry.gauge("ddactor_build_info", "Always 1; the labels say which ddactor this is.",
                 {"version"})
    .with({version_string})
    .set(1);
}

void set_peer_info(metrics_registry& registry, const std::string& peer_id,
                   const std::string& swarm_id) {
  registry
    .gauge("ddactor_peer_info", "Always 1; the labels name this peer and its swarm.",
           {"peer_id", "swarm_id", "version"})
    .with({peer_id, swarm_id, version_string})
    .set(1);
}

callback_gauge_registration register_checkpoint_age(metrics_registry& registry,
                                                    double baseline_unix_seconds) {
  // The registry outlives every registration, so the gauge reference stays valid.
  const gauge& last_success = checkpoint_metrics(registry).last_success;
  return registry.callback_gauge(
    "ddactor_checkpoint_age_seconds",
    "Seconds since the last checkpoint was written (before the first one: since the newest "
    "checkpoint found at start, or since the start).",
    {}, [&last_success, baseline_unix_seconds] {
      double last = std::max(last_success.value(), baseline_unix_seconds);
      return std::max(0.0, unix_time_seconds() - last);
    });
}

std::vector<callback_gauge_registration> register_peer_activity(metrics_registry& registry,
                                                                const peer_health& health) {
  std::vector<callback_gauge_registration> registrations;
  for (auto activity : all_activities)
    registrations.push_back(registry.callback_gauge(
      "ddactor_peer_activity",
      "1 for what this peer is doing now (as GET /healthz reports it), 0 for the rest.",
      {{"activity", to_string(activity)}},
      [&health, activity] { return health.current() == activity ? 1.0 : 0.0; }));
  return registrations;
}

} // namespace ddactor
