// The progress actor: swarm-wide samples per epoch; see progress.hpp.
#include "actors/progress.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <optional>
#include <set>

#include "actors/local_control.hpp"
#include "monitoring/ddactor_metrics.hpp"
#include "monitoring/swarm_status.hpp"
#include "runtime/message_types.hpp"
#include "runtime/progress_tracker.hpp"
#include "runtime/secure/report_proof.hpp"

namespace ddactor {

namespace {

using clock_type = std::chrono::steady_clock;

struct progress_state {
  progress_options options;
  std::optional<progress_tracker> tracker;  // runtime/progress_tracker.hpp: the rules
  progress_listener trainer;
  epochs_listener averager;
  // Learned from its view messages: where the peers' link rates go (relay choice).
  peer_link_rate_sink membership;
  std::map<std::string, double> told_link_rates;  // what membership was told, per peer
  std::vector<progress_remote> others;  // progress actors of the other peers of this swarm
  std::map<std::string, state_server_remote> state_servers;  // of the other peers, by id
  averaging_metrics metrics{global_metrics()};
  swarm_metrics swarm{global_metrics()};
  uint64_t unvouched_counted = 0;
  // Our report as last sent (signed where there is a key), and its sequence number.
  progress_report outgoing;
  uint64_t sequence = 0;
  uint64_t bad_signatures = 0;
  static inline const char* name = "progress";
};

using progress_pointer = progress_actor::stateful_pointer<progress_state>;

bool same_claims(const progress_report& a, const progress_report& b) {
  return a.peer_id == b.peer_id && a.swarm_id == b.swarm_id && a.epoch == b.epoch &&
         a.samples == b.samples && a.samples_per_second == b.samples_per_second &&
         a.ready == b.ready && a.state_digest == b.state_digest && a.resyncing == b.resyncing &&
         a.may_lead == b.may_lead && a.link_rate == b.link_rate;
}

// Our report for the others: signed again, with the next sequence number, whenever a claim in
// it changed since the last one sent (one signature per change, not per receiver).
const progress_report& outgoing_report(progress_pointer self) {
  auto& st = self->state;
  const auto& mine = st.tracker->mine();
  if (same_claims(mine, st.outgoing))
    return st.outgoing;
  st.outgoing = mine;
  st.outgoing.sequence = ++st.sequence;
  if (st.options.key)
    sign_report(st.outgoing, *st.options.key);
  return st.outgoing;
}

void send_report(progress_pointer self) {
  auto& st = self->state;
  const auto& report = outgoing_report(self);
  for (const auto& other : st.others)
    self->send(other, progress_atom_v, report);
  if (!st.options.impersonate_others)
    return;
  for (const auto& [id, server] : st.state_servers) {
    auto posing = report;
    posing.peer_id = id;
    if (st.options.key)
      sign_report(posing, *st.options.key);  // our key: it cannot prove their id
    for (const auto& other : st.others)
      self->send(other, progress_atom_v, posing);
  }
}

// Membership picks relays by the peers' measured link rates: told when one changes by a tenth.
void tell_link_rate(progress_pointer self, const progress_report& report) {
  auto& st = self->state;
  const double rate = claimed_link_rate(report);
  auto& told = st.told_link_rates[report.peer_id];
  if (!st.membership || std::abs(rate - told) <= 0.1 * told)
    return;
  told = rate;
  self->send(st.membership, link_rate_atom_v, report.peer_id, rate);
}

// The averager's matchmaking needs every peer's current epoch: pushed whenever one changes.
void push_epochs(progress_pointer self) {
  auto& st = self->state;
  if (!st.averager)
    return;
  auto reports = st.tracker->epochs(clock_type::now());
  self->send(st.averager, peer_epochs{std::move(reports.epochs), std::move(reports.not_leading)});
}

// The trainer's view of the swarm: the estimate, where to get the state, whether ours differs.
void send_view(progress_pointer self) {
  auto& st = self->state;
  if (!st.trainer)
    return;
  const auto now = clock_type::now();
  const auto est = st.tracker->estimate(now);
  swarm_progress view;
  view.max_epoch = est.quorum_epoch;
  view.vouched = st.tracker->vouched(now);
  view.swarm_size = est.swarm_size;
  view.samples_per_second = est.samples_per_second;
  view.epoch_samples = est.epoch_samples;
  view.peers_reported = est.peers_reported;
  std::vector<std::string> candidates;
  for (const auto& [id, server] : st.state_servers)
    candidates.push_back(id);
  auto sources = st.tracker->rank_state_sources(candidates, now);
  for (const auto& id : sources.peer_ids)
    view.state_servers.push_back(st.state_servers.at(id));
  view.keep_own_state = sources.keep_own_state;
  if (st.tracker->settled(now)) {
    view.settled_epoch = st.tracker->mine().epoch;
    view.settled_digest = st.tracker->mine().state_digest;
  }
  if (auto split = st.tracker->check_agreement(now)) {
    if (split->first_time) {
      st.metrics.split_repairs.inc();
      spdlog::warn("epoch {}: these weights differ from those {} of {} peers of this epoch hold "
                   "(the swarm averaged in split groups); taking theirs",
                   split->epoch, split->agreed.holders.size(), split->peers);
    }
    view.diverged = true;
    for (const auto& id : split->agreed.holders)
      if (auto it = st.state_servers.find(id); it != st.state_servers.end())
        view.agreeing_servers.push_back(it->second);
  }
  self->send(st.trainer, std::move(view));
}

void update(progress_pointer self) {
  auto& st = self->state;
  const auto now = clock_type::now();
  const auto est = st.tracker->estimate(now);
  st.metrics.epoch.set(static_cast<double>(st.tracker->mine().epoch));
  st.metrics.swarm_samples_per_second.set(est.samples_per_second);
  st.metrics.swarm_epoch_progress.set(est.epoch_samples);
  const auto decision = st.tracker->update(now);
  if (auto claims = st.tracker->unvouched_claims(); claims > st.unvouched_counted) {
    st.metrics.unvouched_epochs.inc(static_cast<double>(claims - st.unvouched_counted));
    st.unvouched_counted = claims;
    spdlog::warn("a peer claims epoch {} while no quorum of peers is past {}: ignored",
                 est.max_epoch, st.tracker->mine().epoch);
  }
  using kind = progress_tracker::decision::kind;
  if (decision.what == kind::behind) {
    send_view(self);  // a peer is past our epoch: the trainer catches up, told at once
  } else if (decision.what == kind::average && st.trainer) {
    // Urgent: batches already queued in the trainer's mailbox would otherwise be trained into
    // this epoch first, overshooting target_batch_size by the prefetch depth.
    self->send<caf::message_priority::high>(st.trainer, average_atom_v, decision.epoch);
  }
}

progress_actor::behavior_type progress(progress_pointer self, progress_options options) {
  auto& st = self->state;
  st.options = std::move(options);
  // From the wall clock, so that a restarted peer's reports continue above its last run's.
  st.sequence = static_cast<uint64_t>(
    std::chrono::duration_cast<std::chrono::microseconds>(
      std::chrono::system_clock::now().time_since_epoch()).count());
  st.tracker.emplace(progress_tracker_options{st.options.peer_id, st.options.swarm_id,
                                              st.options.target_batch_size,
                                              st.options.stale_after, st.options.repair_splits,
                                              st.options.group_size,
                                              st.options.state_quorum});
  self->send(self, tick_atom_v);
  return {
    [=](attach_atom, progress_listener& trainer) {
      if (!refuse_remote(self, "progress", "attach"))
        self->state.trainer = std::move(trainer);
    },
    [=](attach_atom, epochs_listener& averager) {
      if (!refuse_remote(self, "progress", "attach"))
        self->state.averager = std::move(averager);
    },
    [=](view_atom, const std::vector<swarm_member>& view) {
      auto& st = self->state;
      if (refuse_remote(self, "progress", "view"))
        return;
      st.membership = caf::actor_cast<peer_link_rate_sink>(self->current_sender());
      st.others.clear();
      st.state_servers.clear();
      std::set<std::string> peers;
      for (const auto& m : view) {
        if (m.info.swarm_id != st.options.swarm_id || m.info.peer_id == st.options.peer_id)
          continue;
        if (m.progress)
          st.others.push_back(m.progress);
        if (m.state_server)
          st.state_servers[m.info.peer_id] = m.state_server;
        peers.insert(m.info.peer_id);
      }
      // Forget peers that left.
      st.tracker->keep_peers(peers, static_cast<int32_t>(st.others.size() + 1));
      std::erase_if(st.told_link_rates,
                    [&](const auto& told) { return !peers.contains(told.first); });
      update(self);
    },
    [=](progress_atom, int64_t epoch, int64_t samples, double samples_per_second,
        uint64_t state_digest, bool resyncing, bool may_lead) {
      auto& st = self->state;
      if (refuse_remote(self, "progress", "own progress"))
        return;
      const auto change = st.tracker->on_own_progress(epoch, samples, samples_per_second,
                                                      state_digest, resyncing, may_lead);
      if (st.options.status_board)
        st.options.status_board->record_progress(st.options.peer_id, epoch, samples_per_second,
                                                 clock_type::now());
      // Tell the others at once: a new epoch (matchmaking relies on it), new weights, or a
      // new batch (their estimates count it from now).
      if (change.moved || change.counted)
        send_report(self);
      if (change.moved)
        push_epochs(self);
      update(self);
    },
    [=](progress_atom, const progress_report& report) {
      auto& st = self->state;
      if (st.options.require_proof && !report_proven(report)) {
        st.swarm.rejected.with({"bad_signature"}).inc();
        if (++st.bad_signatures <= 5 || st.bad_signatures % 100 == 0)
          spdlog::warn("progress: rejected a report for peer {} whose signature does not hold "
                       "({} so far)",
                       report.peer_id.substr(0, 8), st.bad_signatures);
        return;
      }
      const auto now = clock_type::now();
      const auto moved = st.tracker->on_report(report, now);
      if (!moved)
        return;  // not for us, or not believable
      tell_link_rate(self, report);
      if (st.options.status_board)
        st.options.status_board->record_progress(report.peer_id, report.epoch,
                                                 report.samples_per_second, now);
      if (*moved)
        push_epochs(self);
      update(self);
    },
    // Local, from the averager: this peer's measured link rate, for its reports.
    [=](link_rate_atom, double bytes_per_second) {
      if (!refuse_remote(self, "progress", "link rate"))
        self->state.tracker->set_own_link_rate(bytes_per_second);
    },
    [=](tick_atom) {
      auto& st = self->state;
      if (refuse_remote(self, "progress", "tick"))
        return;
      send_report(self);
      update(self);
      send_view(self);
      push_epochs(self);
      self->delayed_send(self, st.options.report_interval, tick_atom_v);
    },
  };
}

} // namespace

progress_actor spawn_progress(caf::actor_system& system, progress_options options) {
  return system.spawn(progress, std::move(options));
}

} // namespace ddactor
