#pragma once
// How far the swarm is in this peer's epoch, as a plain state machine: this peer's progress and
// the other peers' reports in, decisions out (the epoch's target is reached: average; a peer is
// past our epoch: we fell behind; our weights are not the swarm's: take theirs; where to get a
// state). The progress actor (actors/progress.hpp) adds the timers, the sending and the actor
// handles; the swarm simulator drives the same code.
//
// Semantics (hivemind's): every peer reports (epoch, samples this epoch, samples/s) whenever its
// trainer starts a batch -- the batch counts from then -- and as a heartbeat; the swarm's samples
// in our epoch are the sum of the latest fresh reports at our epoch, not extrapolated (that would
// count batches in flight twice and end epochs early). Reports older than stale_after are
// ignored. A report that claims more than a peer could have (2^40 samples, 1e9 samples/s) is
// refused, so a hostile one cannot overflow the estimate.

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "runtime/matchmaking_rules.hpp"
#include "runtime/state_agreement.hpp"
#include "runtime/state_quorum.hpp"
#include "runtime/swarm_messages.hpp"

namespace ddactor {

struct progress_tracker_options {
  std::string peer_id;
  std::string swarm_id;
  int64_t target_batch_size = 256;
  std::chrono::milliseconds stale_after{5000};
  /// Compare weight digests with the peers of the same epoch (runtime/state_agreement.hpp).
  bool repair_splits = true;
  /// Peers of one epoch beyond this average in several groups and differ on purpose.
  std::size_t group_size = 16;
  /// Distinct peers that must vouch for a state before this peer falls behind it or takes it
  /// (runtime/state_quorum.hpp); fewer when fewer others are there.
  std::size_t state_quorum = 2;
};

/// Whether a report from the network claims what a peer could have: a 32-character peer id, an
/// epoch >= 0, 0..2^40 samples and 0..1e9 samples/s. Says nothing of its swarm or its author
/// (the tracker's business) nor of its signature (report_proof.hpp).
bool believable_report(const progress_report& report) noexcept;

/// The link rate a report claims, for choosing relays, or 0 where it is no measurement (not
/// finite, not positive, 1 Tbit/s or more): a claim only steers which relay is asked first.
double claimed_link_rate(const progress_report& report) noexcept;

class progress_tracker {
public:
  using clock = std::chrono::steady_clock;
  using time_point = clock::time_point;

  struct own_change {
    bool moved = false;    ///< epoch, digest, resyncing or may_lead changed: tell everyone now
    bool counted = false;  ///< a new batch: tell everyone now
  };
  struct swarm_estimate {
    int64_t max_epoch = 0;  ///< the highest epoch of a fresh report (ours included)
    int64_t quorum_epoch = 0;  ///< the highest a quorum reached (ours if higher): see vouched()
    int32_t swarm_size = 1;
    double samples_per_second = 0;
    double epoch_samples = 0;  ///< the swarm's samples in our epoch
    int32_t peers_reported = 0;
  };
  /// What the trainer should hear now.
  struct decision {
    enum class kind : uint8_t { none, behind, average };
    kind what = kind::none;
    int64_t epoch = 0;  ///< behind: the swarm's epoch; average: ours
  };
  /// Our weights are not those most peers of our epoch hold.
  struct divergence {
    state_agreement agreed;
    int64_t epoch = 0;
    std::size_t peers = 0;    ///< peers compared (us included)
    bool first_time = false;  ///< the first check that decided it (log and count once)
  };
  /// Peers that could serve a state, best first, and whether ours becomes the swarm's.
  struct state_sources {
    std::vector<std::string> peer_ids;
    bool keep_own_state = false;
  };

  explicit progress_tracker(progress_tracker_options options);

  const progress_report& mine() const noexcept { return mine_; }
  /// This peer's measured link rate, for its reports.
  void set_own_link_rate(double bytes_per_second) { mine_.link_rate = bytes_per_second; }

  /// This peer's trainer reports its progress.
  own_change on_own_progress(int64_t epoch, int64_t samples, double samples_per_second,
                             uint64_t state_digest, bool resyncing, bool may_lead);
  /// Another peer's report. nullopt: refused (another swarm, not believable, or a sequence
  /// below the newest seen from that peer: a replay); else whether
  /// its epoch or may_lead moved (the averager's matchmaking needs to know).
  std::optional<bool> on_report(const progress_report& report, time_point now);
  /// The swarm's members changed: reports of peers not in `peer_ids` are forgotten.
  void keep_peers(const std::set<std::string>& peer_ids, int32_t swarm_size);

  swarm_estimate estimate(time_point now) const;
  /// What a quorum of the fresh other peers vouches for (state_quorum.hpp).
  vouched_states vouched(time_point now) const;
  /// Times a peer claimed an epoch past ours that no quorum vouched for (each claim once).
  uint64_t unvouched_claims() const noexcept { return unvouched_claims_; }
  /// Each fresh peer's epoch and who does not lead its epoch (this peer included).
  epoch_reports epochs(time_point now) const;
  /// Whether the epoch's target is reached (once per epoch) or a quorum of peers is past our
  /// epoch (once per epoch ahead; one peer's claim is not enough); also sets mine().ready.
  decision update(time_point now);
  /// At the second check running that finds our weights differ from the agreed ones (one check
  /// may see half an update), and every check after while they still do.
  std::optional<divergence> check_agreement(time_point now);
  /// After the last epoch: whether every fresh peer has reported our epoch and nothing is left
  /// to repair, so that this peer may write its final weights and leave. Where the epoch's peers
  /// fit in one group, every digest must equal ours (a peer that differs is about to take ours,
  /// or we theirs); in a larger swarm, groups differ by design and reaching the epoch is enough.
  /// A peer claiming a later epoch with no digest at ours is no reason to wait.
  bool settled(time_point now) const;
  /// Of `candidates` (peers with a state server): peers whose state a quorum vouches for first,
  /// peers claiming an epoch past what a quorum reached (plus one) last; within each, those that
  /// hold the swarm's state before those resyncing themselves, each by reported epoch, highest
  /// first; peers not heard from after them.
  /// When every one that could serve is resyncing too and this peer has the lowest id among
  /// them, its own state becomes the swarm's.
  state_sources rank_state_sources(const std::vector<std::string>& candidates,
                                   time_point now) const;

private:
  struct received_report {
    progress_report report;
    time_point at;
  };
  bool fresh(const received_report& r, time_point now) const {
    return now - r.at <= options_.stale_after;
  }

  progress_tracker_options options_;
  progress_report mine_;
  int32_t swarm_size_ = 1;
  std::map<std::string, received_report> reports_;
  int64_t signalled_epoch_ = -1;
  int64_t behind_reported_ = -1;
  int64_t unvouched_reported_ = -1;
  uint64_t unvouched_claims_ = 0;
  digest_history my_digests_;
  std::map<std::string, digest_history> peer_digests_;
  int disagreeing_checks_ = 0;
};

} // namespace ddactor
