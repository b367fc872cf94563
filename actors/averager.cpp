// The averager: matchmaking (member and leader roles) and one group actor per round; see
// averager.hpp.
#include "actors/averager.hpp"

#include <sodium.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <deque>
#include <map>
#include <random>
#include <set>

#include "actors/local_control.hpp"
#include "actors/averaging_group.hpp"
#include "actors/compressor.hpp"
#include "monitoring/ddactor_metrics.hpp"
#include "monitoring/swarm_status.hpp"
#include "runtime/allreduce/bandwidth_shares.hpp"
#include "runtime/allreduce/link_rate_estimate.hpp"
#include "runtime/allreduce/round_deadline.hpp"
#include "runtime/matchmaking_leader.hpp"
#include "runtime/matchmaking_rules.hpp"
#include "runtime/secure/assignment_proof.hpp"
#include "runtime/secure/misbehaviour_scores.hpp"
#include "runtime/message_types.hpp"

namespace ddactor {

namespace {

using clock_type = std::chrono::steady_clock;

// Leader side: a join waiting for its group (matchmaking_leader holds its ticket).
struct pending_join {
  round_request request;
  caf::response_promise promise;
};

// Member side: the request of the trainer in progress.
struct member_request {
  average_request request;
  caf::response_promise promise;
  averaging_group_actor group;
  clock_type::time_point started;
  clock_type::time_point join_deadline;
  std::set<std::string> failed_leaders;
  // Peers that answered "not the leader" (a lower one leads): skipped while that one leads, and
  // asked again when it leaves or fails (a relay's death can take the leader's link for a
  // moment; without this, every peer below it would stay skipped and this one step alone).
  std::set<std::string> deferring_leaders;
  // The join in flight: to whom, and which attempt (answers to older attempts are ignored).
  std::string pending_leader;
  uint64_t attempt = 0;
  // The leader that matched us and the group it assigned (for the status board).
  std::string leader;
  std::vector<std::string> group_members;
};

struct averager_state {
  averager_options options;
  std::vector<swarm_member> members;  // of this swarm, sorted by id (self included)
  epoch_reports reports;  // the peers' epochs, self included (runtime/matchmaking_rules.hpp)
  std::vector<std::string> member_ids;  // of `members`, in the same order
  std::optional<matchmaking_leader> leader;  // runtime/matchmaking_leader.hpp
  std::map<uint64_t, pending_join> pending_joins;  // by ticket
  uint64_t next_ticket = 0;
  std::optional<member_request> current;
  std::mt19937_64 nonce{std::random_device{}()};
  // Top-k error feedback: what earlier rounds did not send, per element, across rounds (the
  // last finished round's; null until one finished).
  std::shared_ptr<const std::vector<float>> residual;
  liveness_sink membership;  // told by group actors which members' chunks arrive
  std::vector<compressor_actor> compressors;  // lent to every round's group
  link_rate_estimate link_rates;  // measured by this peer's rounds
  // Every round's result is written into one recycled buffer (page-faulted once, not per round).
  std::shared_ptr<recycled_floats> output_buffers = std::make_shared<recycled_floats>();
  // Leaders that took a join and never answered it: skipped until the epoch given, so a hostile
  // or hung leader costs one matchmaking, not one per epoch.
  std::map<std::string, int64_t> silent_leaders;
  // Misbehaviour by peer (invalid or unsigned chunks, audits failed or unanswered): a banned
  // peer is left out of this peer's rounds, as leader and member, for network.ban_time, so one
  // broken or hostile peer costs one restart, not one per epoch.
  misbehaviour_scores scores;
  // debug.byzantine = "silent_leader": joins taken and never answered.
  std::vector<caf::response_promise> swallowed_joins;
  // Groups of finished rounds that may still stay for auditors, oldest first.
  std::deque<averaging_group_actor> lingering_groups;
  // Told when an audit proves a round poisoned: the trainer of the latest request.
  round_discard_sink discard_to;
  // options.key, shared with the coders of every round (they sign chunks on their threads).
  std::shared_ptr<const peer_key> signing_key;
  averaging_metrics metrics{global_metrics()};
  static inline const char* name = "averager";
};

// Finished rounds whose groups may stay for auditors (each keeps its part's inputs).
constexpr size_t max_lingering_groups = 2;
// Epochs a leader that never answered a join is skipped for.
constexpr int64_t silent_leader_skip_epochs = 20;
// Points per offence (misbehaviour_scores::threshold bans). Invalid data and a disproved result
// are proof: a ban at once. An audit left unanswered may be a crash or a link too busy to show
// the evidence in time: it takes several.
constexpr double invalid_data_points = misbehaviour_scores::threshold;
constexpr double lie_points = misbehaviour_scores::threshold;
constexpr double unanswered_audit_points = 3;

using averager_pointer = averager_actor::stateful_pointer<averager_state>;

bool is_banned(const averager_state& st, const std::string& peer_id) {
  return st.scores.banned(peer_id, clock_type::now());
}

// Banned peers count as being at no epoch: a leader does not wait for them, and they lead
// nothing (a peer without a report would be awaited, as a joiner is).
void leave_out_banned(averager_state& st) {
  for (auto& [id, epoch] : st.reports.epochs)
    if (is_banned(st, id))
      epoch = -1;
  st.metrics.banned_now.set(static_cast<double>(st.scores.banned_count(clock_type::now())));
}

// Adds to `peer_id`'s score for `offence`; past the threshold it is banned (logged, counted).
void score(averager_pointer self, const std::string& peer_id, double points,
           const std::string& offence) {
  auto& st = self->state;
  if (peer_id == st.options.peer_id)
    return;
  if (st.scores.add(peer_id, points, clock_type::now())) {
    st.metrics.banned_peers.inc();
    spdlog::warn("peer {} banned for {} s ({}): left out of this peer's rounds{}",
                 peer_id.substr(0, 8), st.scores.ban_time().count(), offence,
                 st.options.on_ban ? ", its links closed and refused" : "");
    if (st.options.on_ban)
      st.options.on_ban(peer_id, st.scores.banned_until(peer_id));
  }
  leave_out_banned(st);
}

void deliver(averager_pointer self, average_outcome outcome) {
  auto& st = self->state;
  if (!st.current)
    return;
  const auto result = std::string(to_string(outcome.result));
  auto now = clock_type::now();
  auto seconds = std::chrono::duration<double>(now - st.current->started).count();
  st.metrics.rounds.with({result}).inc();
  st.metrics.round_seconds.observe(seconds);
  st.metrics.group_size.set(outcome.group_size);
  if (st.options.status_board) {
    round_status round;
    round.epoch = st.current->request.epoch;
    round.group_size = outcome.group_size;
    round.seconds = seconds;
    round.bytes_sent = outcome.bytes_sent;
    round.bytes_received = outcome.bytes_received;
    round.result = outcome.result;
    if (round.result == round_result::averaged || round.result == round_result::failed) {
      round.leader_id = st.current->leader;
      round.members = st.current->group_members;
    }
    round.detail = outcome.detail;
    st.options.status_board->record_round(std::move(round), now);
  }
  st.current->promise.deliver(std::move(outcome));
  st.current.reset();
}

// `reason`: the label of ddactor_averaging_round_failures_total (metric_label_values).
// The round ends without a group: `alone`, the peer's own values come back; `missed`, the
// leader had closed this epoch's matchmaking, so its group averages without this peer (a joiner
// that downloaded the state as the round formed, or a peer whose batches came late): stepping
// alone would only set it apart, so the trainer applies nothing and takes the swarm's next state.
void deliver_without_group(averager_pointer self, round_result result, const char* reason,
                           const std::string& why) {
  auto& st = self->state;
  if (!st.current)
    return;
  st.metrics.round_failures.with({reason}).inc();
  if (result == round_result::missed)
    spdlog::info("epoch {}: the swarm's round formed without this peer ({}); taking the swarm's "
                 "next state instead of stepping alone",
                 st.current->request.epoch, why);
  else
    spdlog::warn("epoch {}: no averaging partner ({}); stepping alone", st.current->request.epoch,
                 why);
  if (st.current->group)
    self->send_exit(st.current->group, caf::exit_reason::user_shutdown);
  average_outcome outcome;
  outcome.values = st.current->request.values;
  outcome.group_size = 1;
  outcome.result = result;
  outcome.detail = why;
  deliver(self, std::move(outcome));
}

void deliver_alone(averager_pointer self, const char* reason, const std::string& why) {
  deliver_without_group(self, round_result::alone, reason, why);
}

// --- leader role ----------------------------------------------------------------------------

// ", parts by link rate: 40% 40% 20% 0% (Mbit/s: 100 100 60 20)" when they are not equal;
// members that cannot accept connections are marked "NAT" in place of their rate.
std::string describe_parts(const std::vector<uint64_t>& shares, const std::vector<double>& rates,
                           const std::vector<bool>& reachable) {
  if (std::adjacent_find(shares.begin(), shares.end(), std::not_equal_to<>()) == shares.end())
    return "";
  double total = 0;
  for (auto share : shares)
    total += static_cast<double>(share);
  std::string parts = ", parts by link rate:", mbits = " (Mbit/s:";
  for (size_t m = 0; m < shares.size(); ++m) {
    parts += fmt::format(" {:.0f}%", 100.0 * static_cast<double>(shares[m]) / total);
    mbits += !reachable[m]  ? std::string(" NAT")
             : rates[m] > 0 ? fmt::format(" {:.0f}", rates[m] * 8 / 1e6)
                            : std::string(" ?");
  }
  return parts + mbits + ")";
}

// Answers the joins of the groups the leader formed with their assignments.
void assign(averager_pointer self, std::vector<matchmaking_leader::group> groups) {
  auto& st = self->state;
  for (auto& formed : groups) {
    group_assignment assignment;
    assignment.round_id = st.nonce();
    assignment.epoch = formed.epoch;
    double samples = 0;
    std::vector<double> rates;
    std::vector<bool> reachable;
    std::vector<caf::response_promise> promises;
    for (size_t m = 0; m < formed.members.size(); ++m) {
      auto it = st.pending_joins.find(formed.members[m].ticket);
      if (it == st.pending_joins.end())
        continue;  // cannot happen: every join the leader holds has its ticket here
      const auto& request = it->second.request;
      assignment.length = request.length;
      assignment.members.push_back(
        {request.peer_id, request.group, request.weight, formed.shares[m]});
      samples += request.weight;
      rates.push_back(request.link_rate);
      reachable.push_back(request.reachable);
      promises.push_back(std::move(it->second.promise));
      st.pending_joins.erase(it);
    }
    std::vector<uint64_t> shares;
    for (const auto& member : assignment.members)
      shares.push_back(member.part_share);
    const auto deadline =
      round_deadline(assignment.length, shares, rates, st.options.allreduce_timeout);
    assignment.deadline_ms = static_cast<uint64_t>(deadline.count());
    spdlog::info("epoch {}: matched a group of {} with {:.0f} samples (round {:016x}, deadline "
                 "{:.0f} s){}",
                 formed.epoch, assignment.members.size(), samples, assignment.round_id,
                 std::chrono::duration<double>(deadline).count(),
                 describe_parts(shares, rates, reachable));
    if (st.options.key)
      sign_assignment(assignment, *st.options.key);
    for (auto& promise : promises)
      promise.deliver(assignment);
  }
}

matchmaking_leader::swarm_knowledge knowledge(const averager_state& st) {
  return {st.reports, st.member_ids};
}

caf::result<group_assignment> on_join(averager_pointer self, round_request& req) {
  auto& st = self->state;
  if (!acceptable_round_request(req, st.options.swarm_id))
    return make_error(errc::invalid_message, "invalid round request");
  if (is_banned(st, req.peer_id))
    return make_error(errc::invalid_message,
                      "this peer misbehaved and is left out of rounds for a while");
  if (st.options.silent_leader && req.peer_id != st.options.peer_id) {
    st.swallowed_joins.push_back(self->make_response_promise());
    return caf::delegated<group_assignment>();
  }
  const auto ticket = st.next_ticket++;
  auto answer = st.leader->on_join(
    {req.peer_id, req.epoch, req.weight, req.length, req.link_rate, ticket, req.reachable},
    knowledge(st));
  using verdict = matchmaking_leader::verdict;
  switch (answer.outcome) {
    case verdict::closed: return make_error(errc::round_closed, answer.detail);
    case verdict::not_leader: return make_error(errc::not_leader, answer.detail);
    case verdict::shape_mismatch: return make_error(errc::shape_mismatch, answer.detail);
    case verdict::accepted: break;
  }
  if (answer.opened)
    self->delayed_send(self, st.options.matchmaking_time, timeout_atom_v, req.epoch);
  // A retry replaces the earlier join of the same peer: its promise is answered no more.
  std::erase_if(st.pending_joins, [&](const auto& entry) {
    return entry.second.request.peer_id == req.peer_id && entry.second.request.epoch == req.epoch;
  });
  auto promise = self->make_response_promise();
  st.pending_joins.emplace(ticket, pending_join{req, promise});
  assign(self, std::move(answer.formed));
  return caf::delegated<group_assignment>();
}

// --- member role ----------------------------------------------------------------------------

void join_round(averager_pointer self) {
  auto& st = self->state;
  if (!st.current)
    return;
  auto& cur = *st.current;
  auto now = clock_type::now();
  // The leader: the first in the epoch's leader order among its peers (this one at least).
  std::vector<std::string> reachable;  // members whose averager we can ask
  for (const auto& m : st.members)
    if (m.averager)
      reachable.push_back(m.info.peer_id);
  auto skipped = cur.failed_leaders;
  skipped.insert(cur.deferring_leaders.begin(), cur.deferring_leaders.end());
  for (const auto& [id, until] : st.silent_leaders)
    if (until >= cur.request.epoch)
      skipped.insert(id);
  for (const auto& m : st.members)
    if (is_banned(st, m.info.peer_id))
      skipped.insert(m.info.peer_id);
  const auto leader_id =
    next_leader(st.reports, reachable, cur.request.epoch, skipped,
                st.leader->is_open(cur.request.epoch) ? st.options.peer_id : std::string());
  const swarm_member* leader = nullptr;
  for (const auto& m : st.members)
    if (m.info.peer_id == leader_id)
      leader = &m;
  if (leader == nullptr && !cur.deferring_leaders.empty() && now < cur.join_deadline) {
    // Peers defer to a leader this one cannot reach (its link broke a moment ago, and is being
    // dialed again): ask again shortly rather than step alone.
    cur.deferring_leaders.clear();
    cur.pending_leader.clear();
    const auto pause = std::min<std::chrono::milliseconds>(
      std::chrono::milliseconds(200),
      std::chrono::duration_cast<std::chrono::milliseconds>(cur.join_deadline - now));
    self->delayed_send(self, pause, retry_atom_v, cur.request.epoch, ++cur.attempt);
    return;
  }
  if (leader == nullptr || now >= cur.join_deadline) {
    // No one leads this epoch because the swarm has moved past it (a joiner that downloaded
    // the state as the others averaged): they averaged without this peer, so it applies nothing
    // and takes their state, as when a leader refuses a late join.
    if (swarm_past(st.reports, st.options.peer_id, cur.request.epoch))
      deliver_without_group(self, round_result::missed, "missed",
                            "the swarm is past epoch " + std::to_string(cur.request.epoch));
    else if (leader == nullptr)
      deliver_alone(self, "no_leader", "no leader reachable");
    else
      deliver_alone(self, "no_partner", "matchmaking timed out");
    return;
  }
  round_request req{st.options.peer_id, st.options.swarm_id, cur.request.epoch,
                    cur.request.weight, cur.request.values->size(), cur.group,
                    st.options.link_rate > 0 ? st.options.link_rate : st.link_rates.limiting(),
                    st.options.reachable};
  auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(cur.join_deadline - now) +
              st.options.request_timeout;
  auto epoch = cur.request.epoch;
  auto attempt = ++cur.attempt;
  cur.pending_leader = leader_id;
  self->request(leader->averager, wait, join_atom_v, req)
    .then(
      [=](group_assignment& assignment) {
        auto& st = self->state;
        if (!st.current || st.current->request.epoch != epoch || st.current->attempt != attempt)
          return;
        if (st.options.require_proof && !assignment_proven(assignment, leader_id)) {
          // Forged on the way (a relay) or by a leader that signs for someone else.
          st.metrics.unproven_assignments.inc();
          st.silent_leaders[leader_id] = epoch + silent_leader_skip_epochs;
          spdlog::warn("epoch {}: the assignment from leader {} is not signed by it; skipping it "
                       "until epoch {}",
                       epoch, leader_id.substr(0, 8), epoch + silent_leader_skip_epochs);
          st.current->pending_leader.clear();
          st.current->failed_leaders.insert(leader_id);
          join_round(self);
          return;
        }
        st.current->pending_leader.clear();
        st.current->leader = leader_id;
        st.current->group_members.clear();
        for (const auto& member : assignment.members)
          st.current->group_members.push_back(member.peer_id);
        self->send(st.current->group, std::move(assignment));
      },
      [=](const caf::error& err) {
        auto& st = self->state;
        if (!st.current || st.current->request.epoch != epoch || st.current->attempt != attempt)
          return;
        if (err == errc::round_closed) {
          deliver_without_group(self, round_result::missed, "missed", self->system().render(err));
          return;
        }
        if (err == errc::shape_mismatch) {
          deliver_alone(self, "leader_refused", self->system().render(err));
          return;
        }
        if (err == errc::not_leader) {
          spdlog::debug("epoch {}: {} is not the leader; trying the next", epoch,
                        leader_id.substr(0, 8));
          st.current->deferring_leaders.insert(leader_id);
          join_round(self);
          return;
        }
        st.current->deferring_leaders.clear();
        if (err == caf::sec::request_timeout) {
          st.silent_leaders[leader_id] = epoch + silent_leader_skip_epochs;
          st.metrics.silent_leaders.inc();
          spdlog::warn("epoch {}: leader {} took the join and never answered; skipping it until "
                       "epoch {}",
                       epoch, leader_id.substr(0, 8), epoch + silent_leader_skip_epochs);
        } else {
          spdlog::warn("epoch {}: leader {} failed ({}); trying the next", epoch,
                       leader_id.substr(0, 8), self->system().render(err));
        }
        st.current->failed_leaders.insert(leader_id);
        join_round(self);
      });
}

void start_request(averager_pointer self, average_request request) {
  auto& st = self->state;
  auto& cur = *st.current;
  cur.request = std::move(request);
  if (cur.request.discard_to)
    st.discard_to = cur.request.discard_to;
  cur.started = clock_type::now();
  // Time to find a leader that answers: matchmaking twice over (one leader may fail).
  cur.join_deadline = cur.started + 2 * st.options.matchmaking_time;
  averaging_group_options group;
  group.values = cur.request.values;
  group.output_buffers = st.output_buffers;
  group.chunk_elements = st.options.chunk_elements;
  group.timeout = st.options.allreduce_timeout;
  group.max_weight_ratio = st.options.max_weight_ratio;
  group.aggregation = st.options.aggregation;
  group.policy = chunk_policy(st.options.codec, st.options.codec_settings,
                              cur.request.tensor_bounds);
  if (group.policy.error_feedback() && st.residual &&
      st.residual->size() == cur.request.values->size())
    group.residual = *st.residual;
  group.reply_to = self;
  group.membership = st.membership;
  group.compressors = st.compressors;
  const auto& o = st.options;
  if (o.die_in_round > 0 && cur.request.epoch == o.die_in_round)
    group.inject = o.die_as == "reducer" ? averaging_group_options::fault::die_as_reducer
                                         : averaging_group_options::fault::die_as_sender;
  group.corrupt_chunks = o.corrupt_chunks_from > 0 && cur.request.epoch >= o.corrupt_chunks_from;
  group.scale_chunks = o.scale_chunks;
  group.lie_as_reducer = o.lie_as_reducer;
  group.accuse_falsely = o.accuse_falsely;
  if (o.key)
    group.key = st.signing_key;
  group.check_signatures = o.require_proof;
  group.audit_probability = o.audit_probability;
  // From the system's random source, not `nonce`: round ids show that generator's output to
  // other peers, and a reducer must not be able to predict whom this peer audits.
  require_sodium();
  randombytes_buf(&group.audit_seed, sizeof group.audit_seed);
  cur.group = spawn_averaging_group(self->system(), group);
  self->monitor(cur.group);
  join_round(self);
}

averager_actor::behavior_type averager(averager_pointer self, averager_options options) {
  self->state.options = std::move(options);
  self->state.scores = misbehaviour_scores(self->state.options.ban_time);
  if (self->state.options.key)
    self->state.signing_key = std::make_shared<const peer_key>(*self->state.options.key);
  self->state.leader.emplace(self->state.options.peer_id, self->state.options.group_size);
  for (size_t i = 0; i < std::max<size_t>(1, self->state.options.compressor_threads); ++i)
    self->state.compressors.push_back(spawn_compressor(self->system()));
  // The pool ends with the averager, however it ends.
  self->attach_functor([compressors = self->state.compressors](const caf::error&) {
    for (const auto& c : compressors)
      caf::anon_send_exit(c, caf::exit_reason::user_shutdown);
  });
  self->set_down_handler([=](const caf::down_msg& dm) {
    auto& st = self->state;
    if (st.current && st.current->group && dm.source == st.current->group.address()) {
      // The group ended without an outcome (it crashed): fall back to our own values.
      average_outcome outcome;
      outcome.values = st.current->request.values;
      outcome.result = round_result::failed;
      outcome.detail = "group actor ended: " + self->system().render(dm.reason);
      st.metrics.round_failures.with({"group_crashed"}).inc();
      deliver(self, std::move(outcome));
    }
  });
  return {
    [=](view_atom, const std::vector<swarm_member>& view) {
      auto& st = self->state;
      if (refuse_remote(self, "averager", "view"))
        return;
      st.members.clear();
      for (const auto& m : view)
        if (m.info.swarm_id == st.options.swarm_id)
          st.members.push_back(m);
      std::sort(st.members.begin(), st.members.end(),
                [](const swarm_member& a, const swarm_member& b) {
                  return a.info.peer_id < b.info.peer_id;
                });
      st.member_ids.clear();
      for (const auto& m : st.members)
        st.member_ids.push_back(m.info.peer_id);
      // A leader that left the view will never answer our join (CAF does not fail requests to
      // a dead remote actor before their timeout): move on to the next one now.
      if (st.current && !st.current->pending_leader.empty() &&
          std::none_of(st.members.begin(), st.members.end(), [&](const swarm_member& m) {
            return m.info.peer_id == st.current->pending_leader;
          })) {
        spdlog::warn("epoch {}: leader {} left; joining the next", st.current->request.epoch,
                     st.current->pending_leader.substr(0, 8));
        st.current->failed_leaders.insert(st.current->pending_leader);
        st.current->deferring_leaders.clear();
        st.current->pending_leader.clear();
        join_round(self);
      }
      assign(self, st.leader->close_full_rounds(knowledge(st)));
    },
    [=](peer_epochs& epochs) {
      auto& st = self->state;
      if (refuse_remote(self, "averager", "epochs"))
        return;
      st.reports = {std::move(epochs.by_peer), std::move(epochs.not_leading)};
      leave_out_banned(st);
      assign(self, st.leader->close_full_rounds(knowledge(st)));
    },
    [=](average_atom, average_request& request) -> caf::result<average_outcome> {
      auto& st = self->state;
      if (refuse_remote(self, "averager", "average"))
        return make_error(errc::invalid_message, "averager: for this peer's trainer only");
      if (st.current)
        return make_error(errc::invalid_message, "an averaging request is already running");
      if (!request.values || request.values->empty() || !(request.weight > 0))
        return make_error(errc::invalid_message, "nothing to average");
      st.current.emplace();
      st.current->promise = self->make_response_promise();
      start_request(self, std::move(request));
      return caf::delegated<average_outcome>();
    },
    [=](average_outcome& outcome) {
      auto& st = self->state;
      if (st.current && st.current->group &&
          self->current_sender() == caf::actor_cast<caf::strong_actor_ptr>(st.current->group)) {
        self->demonitor(st.current->group.address());
        // The group may stay a while for auditors (averaging_group.hpp); in a fast swarm rounds
        // end faster than that, so only the last few stay, or their evidence (a vector's worth
        // each) and threads would pile up.
        st.lingering_groups.push_back(std::move(st.current->group));
        while (st.lingering_groups.size() > max_lingering_groups) {
          self->send_exit(st.lingering_groups.front(), caf::exit_reason::user_shutdown);
          st.lingering_groups.pop_front();
        }
        st.current->group = nullptr;
        if (outcome.residual)
          st.residual = std::move(outcome.residual);
        for (const auto& id : outcome.offenders)
          score(self, id, invalid_data_points, "it sent invalid data in a round");
        deliver(self, std::move(outcome));
      }
    },
    [=](join_atom, round_request& req) { return on_join(self, req); },
    // From this peer's group actors: what an audit found of a reducer (averaging_group.hpp).
    [=](audit_atom, uint64_t round_id, const std::string& peer_id, const std::string& verdict,
        const std::string& detail) {
      auto& st = self->state;
      if (refuse_remote(self, "averager", "audit verdict"))
        return;
      if (verdict == "lied") {
        score(self, peer_id, lie_points, "an audit disproved its result: " + detail);
        // The poisoned result was applied already: the trainer goes back to before it.
        if (st.discard_to)
          self->send(st.discard_to, discard_atom_v, round_id,
                     "reducer " + peer_id.substr(0, 8) + " lied about its part");
      } else if (verdict == "forged_proof")
        score(self, peer_id, lie_points, "it accused a reducer with a forged proof: " + detail);
      else if (verdict == "unanswered")
        score(self, peer_id, unanswered_audit_points,
              "it did not show an auditor its evidence: " + detail);
    },
    [=](link_rate_atom, double download_bytes, double download_seconds, double upload_bytes,
        double upload_rate) {
      // Only this peer's own group actors measure its link.
      if (refuse_remote(self, "averager", "link rate"))
        return;
      auto& rates = self->state.link_rates;
      rates.add_download(download_bytes, download_seconds);
      rates.add_upload(upload_rate, upload_bytes);
      auto& metric = self->state.metrics.link_rate;
      metric.with({"download"}).set(rates.download());
      metric.with({"upload"}).set(rates.upload());
      const double used =
        self->state.options.link_rate > 0 ? self->state.options.link_rate : rates.limiting();
      metric.with({"used"}).set(used);
      if (self->state.options.progress)
        self->send(self->state.options.progress, link_rate_atom_v, used);
    },
    [=](timeout_atom, int64_t epoch) {
      if (!refuse_remote(self, "averager", "timeout"))
        assign(self, self->state.leader->close(epoch));
    },
    // Matchmaking asks again after a pause (join_round); a later attempt made it stale.
    [=](retry_atom, int64_t epoch, uint64_t attempt) {
      auto& st = self->state;
      if (refuse_remote(self, "averager", "retry"))
        return;
      if (st.current && st.current->request.epoch == epoch && st.current->attempt == attempt &&
          st.current->pending_leader.empty())
        join_round(self);
    },
    [=](attach_atom, liveness_sink& membership) {
      if (!refuse_remote(self, "averager", "attach"))
        self->state.membership = std::move(membership);
    },
  };
}

} // namespace

averager_actor spawn_averager(caf::actor_system& system, averager_options options) {
  return system.spawn(averager, std::move(options));
}

std::chrono::milliseconds averaging_deadline(const averager_options& options) {
  // The longest round a leader may assign (round_deadline.hpp), so that the trainer never gives
  // up on a slow round the averager still runs.
  return 2 * options.matchmaking_time + options.request_timeout +
         options.allreduce_timeout * max_round_deadline_stretch + std::chrono::seconds(10);
}

} // namespace ddactor
