// How far the swarm is in this peer's epoch; see progress_tracker.hpp.
#include "runtime/progress_tracker.hpp"

#include <algorithm>
#include <cmath>

namespace ddactor {

namespace {

// Bounds on what a report may claim, so a hostile one cannot overflow the estimate.
constexpr int64_t max_reported_samples = int64_t{1} << 40;
constexpr double max_reported_rate = 1e9;
// Claimed link rates above this (bytes per second: 1 Tbit/s) are no measurement.
constexpr double max_claimed_link_rate = 125e9;

} // namespace

bool believable_report(const progress_report& report) noexcept {
  return report.peer_id.size() == 32 && report.epoch >= 0 && report.samples >= 0 &&
         report.samples <= max_reported_samples && report.samples_per_second >= 0 &&
         report.samples_per_second <= max_reported_rate;
}

double claimed_link_rate(const progress_report& report) noexcept {
  return std::isfinite(report.link_rate) && report.link_rate > 0 &&
             report.link_rate < max_claimed_link_rate
           ? report.link_rate
           : 0.0;
}

progress_tracker::progress_tracker(progress_tracker_options options)
    : options_(std::move(options)) {
  mine_.peer_id = options_.peer_id;
  mine_.swarm_id = options_.swarm_id;
}

progress_tracker::own_change progress_tracker::on_own_progress(int64_t epoch, int64_t samples,
                                                               double samples_per_second,
                                                               uint64_t state_digest,
                                                               bool resyncing, bool may_lead) {
  own_change change;
  change.moved = epoch != mine_.epoch || state_digest != mine_.state_digest ||
                 resyncing != mine_.resyncing || may_lead != mine_.may_lead;
  change.counted = samples != mine_.samples;
  // A trainer restarted from an older checkpoint goes back to an epoch it had signalled: that
  // epoch's target is signalled again, or a lone peer would wait for it for ever.
  signalled_epoch_ = std::min(signalled_epoch_, epoch - 1);
  mine_.epoch = epoch;
  mine_.samples = samples;
  mine_.samples_per_second = samples_per_second;
  mine_.state_digest = state_digest;
  mine_.resyncing = resyncing;
  mine_.may_lead = may_lead;
  if (my_digests_.record(epoch, state_digest))
    disagreeing_checks_ = 0;  // we took another state: earlier checks no longer apply
  return change;
}

std::optional<bool> progress_tracker::on_report(const progress_report& report, time_point now) {
  if (report.swarm_id != options_.swarm_id || report.peer_id == options_.peer_id ||
      !believable_report(report))
    return std::nullopt;
  auto previous = reports_.find(report.peer_id);
  if (previous != reports_.end() && report.sequence < previous->second.report.sequence)
    return std::nullopt;
  const bool moved = previous == reports_.end() ||
                     previous->second.report.epoch != report.epoch ||
                     previous->second.report.may_lead != report.may_lead;
  reports_[report.peer_id] = {report, now};
  peer_digests_[report.peer_id].record(report.epoch, report.state_digest);
  return moved;
}

void progress_tracker::keep_peers(const std::set<std::string>& peer_ids, int32_t swarm_size) {
  std::erase_if(reports_, [&](const auto& entry) { return peer_ids.count(entry.first) == 0; });
  std::erase_if(peer_digests_, [&](const auto& entry) { return peer_ids.count(entry.first) == 0; });
  swarm_size_ = swarm_size;
}

progress_tracker::swarm_estimate progress_tracker::estimate(time_point now) const {
  swarm_estimate out;
  out.max_epoch = mine_.epoch;
  out.swarm_size = swarm_size_;
  out.samples_per_second = mine_.samples_per_second;
  out.epoch_samples = static_cast<double>(mine_.samples);
  for (const auto& [id, r] : reports_) {
    if (!fresh(r, now))
      continue;
    ++out.peers_reported;
    out.max_epoch = std::max(out.max_epoch, r.report.epoch);
    out.samples_per_second += r.report.samples_per_second;
    if (r.report.epoch == mine_.epoch)
      out.epoch_samples += static_cast<double>(r.report.samples);
  }
  out.quorum_epoch = std::max(mine_.epoch, vouched(now).quorum_epoch.value_or(mine_.epoch));
  return out;
}

vouched_states progress_tracker::vouched(time_point now) const {
  std::vector<state_claim> claims;
  std::size_t others = 0;
  for (const auto& [id, r] : reports_) {
    if (!fresh(r, now))
      continue;
    ++others;
    // A resyncing peer vouches too: its weights are what it says they are (when every peer
    // stepped alone, the one kept becomes the swarm's, and its state must be takeable).
    claims.push_back({id, r.report.epoch, r.report.state_digest});
    if (auto history = peer_digests_.find(id); history != peer_digests_.end())
      for (const auto& [epoch, digest] : history->second.entries())
        if (epoch <= r.report.epoch)
          claims.push_back({id, epoch, digest});
  }
  // Peers in the view count before they report: otherwise, in the moment after a join when
  // only a hostile peer has reported yet, its word alone would be a quorum of the one reporter.
  others = std::max(others, static_cast<std::size_t>(std::max(swarm_size_ - 1, 0)));
  return vouch(claims, required_vouchers(options_.state_quorum, others));
}

epoch_reports progress_tracker::epochs(time_point now) const {
  epoch_reports out;
  out.epochs[options_.peer_id] = mine_.epoch;
  if (!mine_.may_lead)
    out.not_leading.insert(options_.peer_id);
  for (const auto& [id, r] : reports_)
    if (fresh(r, now)) {
      out.epochs[id] = r.report.epoch;
      if (!r.report.may_lead)
        out.not_leading.insert(id);
    }
  return out;
}

progress_tracker::decision progress_tracker::update(time_point now) {
  const auto est = estimate(now);
  // A quorum of peers past our epoch means its round is over (matchmaking closed): averaging
  // alone would set us apart from the swarm, so the trainer catches up instead, told at once.
  // One peer's claim is not enough: it may be lying about its epoch.
  if (est.quorum_epoch > mine_.epoch) {
    mine_.ready = false;
    if (behind_reported_ < est.quorum_epoch) {
      behind_reported_ = est.quorum_epoch;
      return {decision::kind::behind, est.quorum_epoch};
    }
    return {};
  }
  if (est.max_epoch > est.quorum_epoch + 1 && unvouched_reported_ < est.max_epoch) {
    unvouched_reported_ = est.max_epoch;
    ++unvouched_claims_;
  }
  mine_.ready = est.epoch_samples >= static_cast<double>(options_.target_batch_size);
  if (mine_.ready && signalled_epoch_ < mine_.epoch) {
    signalled_epoch_ = mine_.epoch;
    return {decision::kind::average, mine_.epoch};
  }
  return {};
}

// Judged at the newest epoch of ours that other fresh peers have reported too, and only where
// that epoch's peers fit in one group (state_to_take).
std::optional<progress_tracker::divergence> progress_tracker::check_agreement(time_point now) {
  if (!options_.repair_splits)
    return std::nullopt;
  std::vector<state_digest_report> at_epoch;
  int64_t epoch = 0;
  uint64_t ours = 0;
  const auto& my_entries = my_digests_.entries();
  for (auto it = my_entries.rbegin(); it != my_entries.rend() && at_epoch.empty(); ++it) {
    for (const auto& [id, history] : peer_digests_) {
      auto report = reports_.find(id);
      if (report == reports_.end() || !fresh(report->second, now))
        continue;
      if (auto digest = history.at(it->first))
        at_epoch.push_back({id, *digest});
    }
    if (!at_epoch.empty()) {
      epoch = it->first;
      ours = it->second;
      at_epoch.push_back({options_.peer_id, ours});
    }
  }
  if (at_epoch.empty())
    return std::nullopt;  // nothing to compare with yet: neither agreement nor disagreement
  auto agreed = state_to_take(at_epoch, ours, options_.group_size);
  if (!agreed) {
    disagreeing_checks_ = 0;
    return std::nullopt;
  }
  if (++disagreeing_checks_ < 2)
    return std::nullopt;
  return divergence{std::move(*agreed), epoch, at_epoch.size(), disagreeing_checks_ == 2};
}

bool progress_tracker::settled(time_point now) const {
  if (!options_.repair_splits)
    return true;
  const auto ours = my_digests_.at(mine_.epoch);
  if (!ours)
    return false;
  std::vector<state_digest_report> at_epoch{{options_.peer_id, *ours}};
  for (const auto& [id, received] : reports_) {
    if (!fresh(received, now))
      continue;
    auto history = peer_digests_.find(id);
    auto digest = history == peer_digests_.end() ? std::nullopt : history->second.at(mine_.epoch);
    if (digest) {
      at_epoch.push_back({id, *digest});
    } else if (received.report.epoch <= mine_.epoch) {
      return false;  // still on its way to this epoch
    }
  }
  if (state_to_take(at_epoch, *ours, options_.group_size))
    return false;
  if (at_epoch.size() > options_.group_size)
    return true;
  return std::all_of(at_epoch.begin(), at_epoch.end(),
                     [&](const state_digest_report& r) { return r.digest == *ours; });
}

progress_tracker::state_sources progress_tracker::rank_state_sources(
  const std::vector<std::string>& candidates, time_point now) const {
  struct source {
    bool vouched;  // its state is one a quorum vouches for
    bool believable;  // its epoch is not past what a quorum reached (plus the one being entered)
    bool resyncing;
    int64_t epoch;
    const std::string* id;
  };
  const auto quorum = vouched(now);
  std::vector<source> ranked;
  bool someone_in_sync = false;
  bool lowest_resyncing = mine_.resyncing;
  for (const auto& id : candidates) {
    auto it = reports_.find(id);
    if (it == reports_.end() || !fresh(it->second, now)) {
      ranked.push_back({false, true, true, -1, &id});
      continue;
    }
    const auto& report = it->second.report;
    const int64_t reached = std::max(mine_.epoch, quorum.quorum_epoch.value_or(mine_.epoch));
    ranked.push_back({!report.resyncing && may_take(quorum, report.epoch, report.state_digest),
                      report.epoch <= reached + 1, report.resyncing, report.epoch, &id});
    if (!report.resyncing && report.epoch >= mine_.epoch)
      someone_in_sync = true;
    if (report.resyncing && id < options_.peer_id)
      lowest_resyncing = false;
  }
  std::stable_sort(ranked.begin(), ranked.end(), [](const source& a, const source& b) {
    if (a.vouched != b.vouched)
      return a.vouched;
    if (a.believable != b.believable)
      return a.believable;
    return a.resyncing != b.resyncing ? !a.resyncing : a.epoch > b.epoch;
  });
  state_sources out;
  for (const auto& s : ranked)
    out.peer_ids.push_back(*s.id);
  out.keep_own_state = mine_.resyncing && !someone_in_sync && lowest_resyncing;
  return out;
}

} // namespace ddactor
