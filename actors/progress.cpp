// The progress actor: swarm-wide samples per epoch; see progress.hpp.
#include "actors/progress.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <map>

#include "monitoring/ddactor_metrics.hpp"
#include "monitoring/swarm_status.hpp"
#include "runtime/message_types.hpp"
#include "runtime/state_agreement.hpp"

namespace ddactor {

namespace {

using clock_type = std::chrono::steady_clock;

// Bounds on what a report may claim, so a hostile one cannot overflow the estimate.
constexpr int64_t max_reported_samples = int64_t{1} << 40;
constexpr double max_reported_rate = 1e9;

struct received_report {
  progress_report report;
  clock_type::time_point at;
};

struct progress_state {
  progress_options options;
  caf::actor trainer;
  caf::actor averager;
  std::vector<caf::actor> others;  // progress actors of the other peers of this swarm
  std::map<std::string, caf::actor> state_servers;  // of the other peers, by id
  int32_t swarm_size = 1;
  progress_report mine;
  std::map<std::string, received_report> reports;
  int64_t signalled_epoch = -1;
  // The highest epoch ahead of ours the trainer was told of at once (not only on the tick).
  int64_t behind_reported = -1;
  // Digests of recent epochs, ours and the other peers' (runtime/state_agreement.hpp).
  digest_history my_digests;
  std::map<std::string, digest_history> peer_digests;
  // Consecutive checks our digest differed from the agreed one (one may see half an update).
  int disagreeing_ticks = 0;
  averaging_metrics metrics{global_metrics()};
  static inline const char* name = "progress";
};

using progress_pointer = caf::stateful_actor<progress_state>*;

// Samples of the swarm in our epoch and its throughput. Reports count the batch each peer has
// in progress and travel as soon as they change, so they are not extrapolated: that would count
// the batches in flight twice and end epochs early.
swarm_progress estimate(progress_state& st) {
  auto now = clock_type::now();
  swarm_progress out;
  out.max_epoch = st.mine.epoch;
  out.swarm_size = st.swarm_size;
  out.samples_per_second = st.mine.samples_per_second;
  out.epoch_samples = static_cast<double>(st.mine.samples);
  for (const auto& [id, r] : st.reports) {
    auto age = now - r.at;
    if (age > st.options.stale_after)
      continue;
    ++out.peers_reported;
    out.max_epoch = std::max(out.max_epoch, r.report.epoch);
    out.samples_per_second += r.report.samples_per_second;
    if (r.report.epoch == st.mine.epoch)
      out.epoch_samples += static_cast<double>(r.report.samples);
  }
  return out;
}

// The averager's matchmaking needs every peer's current epoch: pushed whenever one changes.
void push_epochs(progress_pointer self) {
  auto& st = self->state;
  if (!st.averager)
    return;
  peer_epochs epochs;
  epochs.by_peer[st.options.peer_id] = st.mine.epoch;
  if (!st.mine.may_lead)
    epochs.not_leading.insert(st.options.peer_id);
  auto now = clock_type::now();
  for (const auto& [id, r] : st.reports)
    if (now - r.at <= st.options.stale_after) {
      epochs.by_peer[id] = r.report.epoch;
      if (!r.report.may_lead)
        epochs.not_leading.insert(id);
    }
  self->send(st.averager, std::move(epochs));
}

// A split swarm: sets view.diverged when our weights are not those most peers of an epoch hold
// (runtime/state_agreement.hpp), at two checks running. Judged at the newest epoch of ours that
// other live peers have reported too, and only where that epoch's peers fit in one group: larger
// swarms average in several groups, whose results differ by design.
void check_agreement(progress_state& st, swarm_progress& view) {
  if (!st.options.repair_splits)
    return;
  auto now = clock_type::now();
  std::vector<state_digest_report> at_epoch;
  int64_t epoch = 0;
  uint64_t mine = 0;
  const auto& my_entries = st.my_digests.entries();
  for (auto it = my_entries.rbegin(); it != my_entries.rend() && at_epoch.empty(); ++it) {
    for (const auto& [id, history] : st.peer_digests) {
      auto report = st.reports.find(id);
      if (report == st.reports.end() || now - report->second.at > st.options.stale_after)
        continue;
      if (auto digest = history.at(it->first))
        at_epoch.push_back({id, *digest});
    }
    if (!at_epoch.empty()) {
      epoch = it->first;
      mine = it->second;
      at_epoch.push_back({st.mine.peer_id, mine});
    }
  }
  if (at_epoch.empty())
    return;  // nothing to compare with yet: neither agreement nor disagreement
  auto agreed = state_to_take(at_epoch, mine, st.options.group_size);
  if (!agreed) {
    st.disagreeing_ticks = 0;
    return;
  }
  if (++st.disagreeing_ticks < 2)
    return;
  if (st.disagreeing_ticks == 2) {
    st.metrics.split_repairs.inc();
    spdlog::warn("epoch {}: these weights differ from those {} of {} peers of this epoch hold "
                 "(the swarm averaged in split groups); taking theirs",
                 epoch, agreed->holders.size(), at_epoch.size());
  }
  view.diverged = true;
  for (const auto& id : agreed->holders)
    if (auto it = st.state_servers.find(id); it != st.state_servers.end())
      view.agreeing_servers.push_back(it->second);
}

// Where a peer that needs the swarm's state should get it: peers that hold the swarm's state
// (not resyncing themselves) before those that do, each by reported epoch, highest first; peers
// not heard from yet last. When every peer that could serve is resyncing too (all stepped alone
// in one round), one state must become the swarm's again: the lowest id keeps its own.
void rank_state_sources(progress_state& st, swarm_progress& view) {
  const auto now = clock_type::now();
  struct source {
    bool resyncing;
    int64_t epoch;
    caf::actor server;
  };
  std::vector<source> ranked;
  bool someone_in_sync = false;
  bool lowest_resyncing = st.mine.resyncing;
  for (const auto& [id, server] : st.state_servers) {
    auto it = st.reports.find(id);
    if (it == st.reports.end() || now - it->second.at > st.options.stale_after) {
      ranked.push_back({true, -1, server});
      continue;
    }
    const auto& report = it->second.report;
    ranked.push_back({report.resyncing, report.epoch, server});
    if (!report.resyncing && report.epoch >= st.mine.epoch)
      someone_in_sync = true;
    if (report.resyncing && id < st.options.peer_id)
      lowest_resyncing = false;
  }
  std::stable_sort(ranked.begin(), ranked.end(), [](const source& a, const source& b) {
    return a.resyncing != b.resyncing ? !a.resyncing : a.epoch > b.epoch;
  });
  for (auto& s : ranked)
    view.state_servers.push_back(std::move(s.server));
  view.keep_own_state = st.mine.resyncing && !someone_in_sync && lowest_resyncing;
}

// The trainer's view of the swarm: the estimate, where to get the state, whether ours differs.
void send_view(progress_pointer self) {
  auto& st = self->state;
  if (!st.trainer)
    return;
  auto view = estimate(st);
  rank_state_sources(st, view);
  check_agreement(st, view);
  self->send(st.trainer, std::move(view));
}

void update(progress_pointer self) {
  auto& st = self->state;
  auto est = estimate(st);
  st.metrics.epoch.set(static_cast<double>(st.mine.epoch));
  st.metrics.swarm_samples_per_second.set(est.samples_per_second);
  st.metrics.swarm_epoch_progress.set(est.epoch_samples);
  // A peer already past our epoch means its round is over (matchmaking closed): averaging alone
  // would set us apart from the swarm, so the trainer catches up instead, told at once.
  if (est.max_epoch > st.mine.epoch) {
    st.mine.ready = false;
    if (st.behind_reported < est.max_epoch) {
      st.behind_reported = est.max_epoch;
      send_view(self);
    }
    return;
  }
  bool ready = est.epoch_samples >= static_cast<double>(st.options.target_batch_size);
  st.mine.ready = ready;
  if (ready && st.signalled_epoch < st.mine.epoch && st.trainer) {
    st.signalled_epoch = st.mine.epoch;
    // Urgent: batches already queued in the trainer's mailbox would otherwise be trained into
    // this epoch first, overshooting target_batch_size by the prefetch depth.
    self->send<caf::message_priority::high>(st.trainer, average_atom_v, st.mine.epoch);
  }
}

caf::behavior progress(progress_pointer self, progress_options options) {
  auto& st = self->state;
  st.options = std::move(options);
  st.mine.peer_id = st.options.peer_id;
  st.mine.swarm_id = st.options.swarm_id;
  self->send(self, tick_atom_v);
  return {
    [=](attach_atom, caf::actor trainer) { self->state.trainer = std::move(trainer); },
    [=](attach_atom, caf::actor averager, caf::ok_atom) {
      self->state.averager = std::move(averager);
    },
    [=](view_atom, const std::vector<swarm_member>& view) {
      auto& st = self->state;
      st.others.clear();
      st.state_servers.clear();
      std::map<std::string, received_report> kept;
      for (const auto& m : view) {
        if (m.info.swarm_id != st.options.swarm_id || m.info.peer_id == st.options.peer_id)
          continue;
        if (m.progress)
          st.others.push_back(m.progress);
        if (m.state_server)
          st.state_servers[m.info.peer_id] = m.state_server;
        if (auto it = st.reports.find(m.info.peer_id); it != st.reports.end())
          kept.insert(*it);
      }
      st.reports = std::move(kept);  // forget peers that left
      std::erase_if(st.peer_digests,
                    [&](const auto& entry) { return st.reports.count(entry.first) == 0; });
      st.swarm_size = static_cast<int32_t>(st.others.size() + 1);
      update(self);
    },
    [=](progress_atom, int64_t epoch, int64_t samples, double samples_per_second,
        uint64_t state_digest, bool resyncing, bool may_lead) {
      auto& st = self->state;
      bool moved = epoch != st.mine.epoch || state_digest != st.mine.state_digest ||
                   resyncing != st.mine.resyncing || may_lead != st.mine.may_lead;
      st.mine.resyncing = resyncing;
      st.mine.may_lead = may_lead;
      bool counted = samples != st.mine.samples;
      st.mine.epoch = epoch;
      st.mine.state_digest = state_digest;
      if (st.my_digests.record(epoch, state_digest))
        st.disagreeing_ticks = 0;  // we took another state: earlier checks no longer apply
      st.mine.samples = samples;
      st.mine.samples_per_second = samples_per_second;
      if (st.options.status_board)
        st.options.status_board->record_progress(st.options.peer_id, epoch, samples_per_second,
                                                 clock_type::now());
      // Tell the others at once: a new epoch (matchmaking relies on it), new weights, or a
      // new batch (their estimates count it from now).
      if (moved || counted)
        for (const auto& other : st.others)
          self->send(other, progress_atom_v, st.mine);
      if (moved)
        push_epochs(self);
      update(self);
    },
    [=](progress_atom, const progress_report& report) {
      auto& st = self->state;
      if (report.swarm_id != st.options.swarm_id || report.peer_id.size() != 32 ||
          report.epoch < 0 || report.samples < 0 || report.samples > max_reported_samples ||
          !(report.samples_per_second >= 0) || report.samples_per_second > max_reported_rate)
        return;  // not for us, or not believable
      auto previous = st.reports.find(report.peer_id);
      bool moved = previous == st.reports.end() ||
                   previous->second.report.epoch != report.epoch ||
                   previous->second.report.may_lead != report.may_lead;
      auto now = clock_type::now();
      st.reports[report.peer_id] = {report, now};
      if (st.options.status_board)
        st.options.status_board->record_progress(report.peer_id, report.epoch,
                                                 report.samples_per_second, now);
      st.peer_digests[report.peer_id].record(report.epoch, report.state_digest);
      if (moved)
        push_epochs(self);
      update(self);
    },
    [=](tick_atom) {
      auto& st = self->state;
      for (const auto& other : st.others)
        self->send(other, progress_atom_v, st.mine);
      update(self);
      send_view(self);
      push_epochs(self);
      self->delayed_send(self, st.options.report_interval, tick_atom_v);
    },
  };
}

} // namespace

caf::actor spawn_progress(caf::actor_system& system, progress_options options) {
  return system.spawn(progress, std::move(options));
}

} // namespace ddactor
