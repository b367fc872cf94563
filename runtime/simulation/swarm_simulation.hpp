#pragma once
// A deterministic simulation of a whole swarm in virtual time: N virtual peers run the product's
// own state machines -- membership's swarm_view, matchmaking's rules and leader
// (matchmaking_rules.hpp, matchmaking_leader.hpp), the butterfly round (butterfly_round.hpp) and
// state agreement (state_agreement.hpp) -- over a network model with per-peer bandwidth and
// latency, jitter, message loss, a partition, and churn (crashes, restarts, slow peers). Peers do
// no training: each contributes a small synthetic vector per epoch, whose weighted average the
// simulation knows, and adds the round's result to its state.
//
// What it models of the actors, and what it leaves out:
//   * membership: a hello exchange admits a peer (both ways), a heartbeat to every member every
//     gossip interval (with the known list to gossip_fanout random ones) keeps it alive, silence
//     suspects and removes it; progress reports (epoch, state digest, may lead) ride on the
//     heartbeats instead of travelling apart.
//   * an epoch's compute takes about epoch_seconds on every peer (the target batch is global);
//     slow peers contribute fewer samples, so they weigh less; greedy ones claim 1000x what they
//     computed, and the round bounds their weight (averaging.max_weight_ratio).
//   * matchmaking and rounds as the averager does them; a crashed member is noticed by its round
//     partners (a dropped connection) after one latency, by the rest through silence.
//   * a peer that stepped alone or missed a round, or whose state differs from the one most
//     peers of its epoch report, downloads the state of a peer that holds the agreed one.
//   * chunks travel reliably and in order (TCP); control messages may be lost and reordered.
//   * coding costs no time; bulk data (chunks, states) queues on the sender's uplink in order,
//     control messages (small, on their own connections) pass beside it; downlinks are not
//     shared.
//
// Determinism: one seeded generator, drawn in event order; events at the same instant run in the
// order they were scheduled. The same configuration gives the same report, byte for byte.
//
// Invariants checked as it runs (each violation is reported with the virtual time):
//   1. every completed round's result equals the weighted mean of the contributions of the
//      members of its last attempt (to float rounding);
//   2. members that complete the same round with the same member set hold the same digest;
//   3. no peer waits past its deadlines (matchmaking, round, download);
//   4. peers that report the same epoch and state digest hold the same values;
//   5. while a majority of the peers is up and no partition is active, the swarm's highest
//      epoch advances within twice the longest wait the protocol's deadlines allow (an epoch's
//      compute plus a missed round's wait: 2 x matchmaking_time + allreduce_timeout), checked
//      every virtual minute;
//   6. with audits on: no honest peer bans an honest one.
//
// Liars (`liars`): peers that, as reducers, send every member the same negated result for their
// part (digests agree). With audit_probability > 0 every chunk is signed and reducers keep their
// evidence, as the product does; after a round an honest member audits one other reducer with
// that probability (reducer_audit.hpp) and bans a liar it catches, telling the other members
// with its proof, which they check against their own result. A peer that proves a lie goes back
// to its state from before that round where it is the last it applied (as the trainer does).
// Audits take no virtual time and read the reducer's evidence directly (the product fetches it
// over the network); accusations travel as messages. Invariant 1 then skips the parts liars
// reduced, and the report counts the poisoned parts honest peers applied, those discarded again,
// and the bans.

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace ddactor {

struct swarm_simulation_config {
  std::size_t peers = 10;
  std::uint64_t seed = 1;
  double minutes = 5;              // virtual
  std::size_t vector_length = 256; // elements each peer contributes per epoch
  std::size_t chunk_elements = 64;
  std::size_t group_size = 16;
  double epoch_seconds = 10;       // compute per epoch
  double joiners = 0;              // share of the peers that join during the first half
  double churn_per_minute = 0;     // share of the peers that crash per minute (each restarts)
  double restart_seconds = 20;     // a crashed peer's downtime, on average
  double loss = 0;                 // probability that a control message is lost
  double jitter_ms = 10;           // added to control messages' latency, uniformly
  double slow_fraction = 0.1;      // peers that compute 4x fewer samples per epoch
  double greedy = 0;               // peers that claim 1000x the samples they computed
  double liars = 0;                // peers that negate the result of the part they reduce
  double audit_probability = 0;    // averaging.audit_probability (0: no signatures, no audits)
  bool partition = false;          // a third of the peers cut off for the middle fifth
  double cut_links = 0;            // share of peer pairs whose own link is cut for the middle
                                   // fifth (each still reaches everyone else)
  // The product's protocol timings (seconds).
  double gossip_interval = 1;
  std::size_t gossip_fanout = 3;
  double suspect_after = 3;
  double remove_after = 8;
  double matchmaking_time = 5;
  double allreduce_timeout = 30;
  double request_timeout = 5;
  double max_weight_ratio = 16;  // averaging.max_weight_ratio
  /// For the simulator's own test: one member's round result is changed, which invariant 1
  /// must report.
  bool inject_wrong_result = false;
  /// Adds a line per phase change of every peer to the report (for replaying a failing seed).
  bool trace = false;
};

struct swarm_simulation_report {
  /// Invariant violations, each with its virtual time (empty: every invariant held).
  std::vector<std::string> violations;
  /// The deterministic report: one line per virtual minute, then the totals and figures.
  std::string text;
  // Figures.
  double gossip_bytes_per_peer_second = 0;
  double join_propagation_mean_seconds = 0;  // a (re)started peer in every live view
  double join_propagation_max_seconds = 0;
  double epochs_per_minute = 0;
  std::uint64_t events = 0;
  std::uint64_t rounds_averaged = 0;
  std::uint64_t rounds_alone = 0;
  std::uint64_t rounds_failed = 0;
  std::uint64_t rounds_missed = 0;
  std::uint64_t downloads = 0;
  std::uint64_t joins = 0;  // peers that joined a running swarm (restarts included)
  std::uint64_t suspicions = 0;
  std::uint64_t false_suspicions = 0;  // of a peer that was up
  std::uint64_t audits = 0;
  std::uint64_t lies_caught = 0;       // audits (own or on an accusation) that found a lie
  std::uint64_t bans = 0;              // an honest peer banning a liar
  std::uint64_t poisoned_parts = 0;    // a liar's part applied by an honest peer
  std::uint64_t discarded_rounds = 0;  // rounds an honest peer went back on (a proven lie)
  std::uint64_t discarded_parts = 0;   // the liars' parts in them
  std::uint64_t discards_too_late = 0; // proven after a later round was applied: kept
};

swarm_simulation_report run_swarm_simulation(const swarm_simulation_config& config);

/// The command line that replays `config` (for a failing seed's message).
std::string replay_command(const swarm_simulation_config& config);

} // namespace ddactor
