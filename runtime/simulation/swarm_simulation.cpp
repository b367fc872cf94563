// A whole swarm in virtual time; see swarm_simulation.hpp for what is modelled and checked.
#include "runtime/simulation/swarm_simulation.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <bit>
#include <deque>
#include <cmath>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <queue>
#include <random>
#include <set>
#include <variant>

#include "runtime/allreduce/butterfly_round.hpp"
#include "runtime/allreduce/reducer_audit.hpp"
#include "runtime/secure/peer_key.hpp"
#include "runtime/matchmaking_leader.hpp"
#include "runtime/matchmaking_rules.hpp"
#include "runtime/round_result.hpp"
#include "runtime/state_agreement.hpp"
#include "runtime/swarm_view.hpp"

namespace ddactor {

namespace {

using seconds = double;
constexpr seconds never = std::numeric_limits<double>::infinity();
constexpr std::size_t control_bytes = 96;  // a small message's header and fields on the wire

swarm_view::time_point at_time(seconds t) {
  return swarm_view::time_point{} +
         std::chrono::duration_cast<swarm_view::clock::duration>(std::chrono::duration<double>(t));
}

// ---- Messages between virtual peers ---------------------------------------------------------

struct hello_message {
  uint32_t from = 0;
  bool reply = false;
  bool want_known = false;  // a bootstrap dial asks for the known list
  std::shared_ptr<const std::vector<peer_info>> known;
};
struct heartbeat_message {  // membership's heartbeat with the progress report riding on it
  uint32_t from = 0;
  int64_t epoch = 0;
  uint64_t digest = 0;
  bool may_lead = true;
  bool ready = false;  // computing no more: waiting in matchmaking or a round
  std::shared_ptr<const std::vector<peer_info>> known;  // gossip_fanout recipients only
};
struct join_message {
  uint32_t from = 0;
  int64_t epoch = 0;
  double weight = 0;
  uint64_t attempt = 0;
};
struct assignment {
  uint64_t round_id = 0;
  int64_t epoch = 0;
  std::vector<uint32_t> peers;
  std::vector<uint64_t> incarnations;
  std::vector<double> weights;
  std::vector<uint64_t> shares;
};
struct join_reply_message {
  int64_t epoch = 0;
  uint64_t attempt = 0;
  matchmaking_leader::verdict verdict = matchmaking_leader::verdict::accepted;
  std::shared_ptr<const assignment> group;  // with `accepted`
};
struct chunk_message {
  uint64_t round_id = 0;
  std::shared_ptr<allreduce_chunk> chunk;  // behind a pointer: events stay small
};
struct digest_message {
  uint64_t round_id = 0;
  uint32_t sender = 0;
  uint64_t member_set = 0;
  uint64_t digest = 0;
};
struct accusation_message {  // an auditor found a reducer's result wrong
  uint64_t round_id = 0;
  uint32_t reducer = 0;  // its index in the group
  std::shared_ptr<const std::vector<audit_evidence>> proof;  // the inputs that disproved it
};
struct member_gone_message {  // a round partner's connection dropped
  uint64_t round_id = 0;
  uint32_t member = 0;
};
struct state_request_message {
  uint32_t from = 0;
};
struct state_reply_message {
  int64_t epoch = 0;
  uint64_t digest = 0;
  std::shared_ptr<const std::vector<float>> state;
};

// ---- Timers ---------------------------------------------------------------------------------

enum class timer_kind : uint8_t {
  gossip,          // heartbeats, liveness
  compute_done,    // the epoch's samples are in
  join_timeout,    // arg: attempt
  close_epoch,     // leader: matchmaking_time of epoch `arg` passed
  round_deadline,  // arg: round id
  missed_wait,     // arg: epoch; the swarm did not move on
  download_timeout,
  dial_timeout,    // arg: peer index dialed
  rejoin,          // a joiner retries its bootstrap peers
};
struct timer_event {
  timer_kind kind = timer_kind::gossip;
  uint64_t arg = 0;
};
struct crash_event {};
struct restart_event {};
struct minute_event {};

using payload =
  std::variant<hello_message, heartbeat_message, join_message, join_reply_message, chunk_message,
               digest_message, accusation_message, member_gone_message, state_request_message,
               state_reply_message,
               timer_event, crash_event, restart_event, minute_event>;

struct event {
  seconds at = 0;
  uint64_t sequence = 0;
  uint32_t to = 0;
  uint64_t incarnation = 0;  // the incarnation it is for; 0: any (crash, restart, minute)
  payload what;
};

struct later_first {
  bool operator()(const event& a, const event& b) const {
    return a.at != b.at ? a.at > b.at : a.sequence > b.sequence;
  }
};

// ---- A virtual peer -------------------------------------------------------------------------

enum class phase : uint8_t { down, joining, training, matchmaking, averaging, missed, downloading };

const char* to_string(phase p) {
  switch (p) {
    case phase::down: return "down";
    case phase::joining: return "joining";
    case phase::training: return "training";
    case phase::matchmaking: return "matchmaking";
    case phase::averaging: return "averaging";
    case phase::missed: return "missed";
    case phase::downloading: return "downloading";
  }
  return "?";
}

struct reported_state {
  int64_t epoch = 0;
  uint64_t digest = 0;
};

struct sim_peer {
  uint32_t index = 0;
  std::string id;
  uint64_t incarnation = 0;
  phase now = phase::down;
  std::vector<uint32_t> bootstrap;
  // Link: bytes per second up and down, one-way latency to the internet's core.
  double up = 0, down = 0, latency = 0;
  seconds uplink_free = 0;
  bool slow = false;
  bool greedy = false;  // claims 1000x its samples
  bool liar = false;    // negates the result of the part it reduces
  std::shared_ptr<const peer_key> key;  // with audits: signs its chunks, its id derives from it
  std::set<uint32_t> banned;           // peers this one caught lying (until it restarts)
  std::set<uint32_t> audited;          // reducers of the current round it audited
  std::shared_ptr<const std::vector<float>> last_result;  // with audits: for accusations
  // With audits, as the trainer keeps it: the state from before the last round applied, that
  // round, and the liars' parts in it (a proven lie sends the peer back to the state).
  std::vector<float> state_before_round;
  uint64_t applied_round = 0;
  std::size_t applied_poisoned_parts = 0;
  uint64_t caught_round = 0;  // proven poisoned before it was applied
  // Membership and progress.
  std::unique_ptr<swarm_view> view;
  epoch_reports reports;
  std::vector<std::optional<reported_state>> digests;  // by peer index
  std::set<uint32_t> dialing;
  std::shared_ptr<const std::vector<peer_info>> known;  // see known_list()
  seconds known_at = 0;
  // Training state.
  int64_t epoch = 0;
  std::vector<float> state;
  bool may_lead = true;
  bool repair_checked = false;
  // Matchmaking, member side.
  std::set<std::string> failed_leaders;
  uint64_t join_attempt = 0;
  seconds join_deadline = 0;
  std::vector<float> contribution;
  double weight = 0;
  // Matchmaking, leader side.
  std::unique_ptr<matchmaking_leader> leader;
  struct ticket {
    uint32_t peer = 0;
    uint64_t attempt = 0;
    int64_t epoch = 0;
  };
  std::map<uint64_t, ticket> tickets;
  uint64_t next_ticket = 0;
  // The round.
  std::unique_ptr<butterfly_round> round;
  std::shared_ptr<const assignment> group;
  std::map<uint64_t, std::vector<allreduce_chunk>> early_chunks;  // by round id
  // Until when the current wait may last (invariant 3).
  seconds wait_bound = never;
  seconds started_at = 0;
  bool propagated = false;
};

class swarm_simulation {
public:
  explicit swarm_simulation(const swarm_simulation_config& config)
      : config_(config), rng_(config.seed) {
    peers_.resize(config.peers);
    for (uint32_t i = 0; i < peers_.size(); ++i) {
      auto& p = peers_[i];
      p.index = i;
      p.id = fmt::format("{:016x}{:016x}", rng_(), rng_());
      if (config.audit_probability > 0) {
        std::array<uint8_t, 32> seed{};
        for (auto& b : seed)
          b = static_cast<uint8_t>(rng_());
        p.key = std::make_shared<const peer_key>(peer_key::from_seed(seed));
        p.id = peer_id_of(p.key->public_part());
      }
      ids_[p.id] = i;
      const double mbit = std::exp(uniform(std::log(10.0), std::log(1000.0)));
      p.down = mbit * 1e6 / 8;
      p.up = p.down / (uniform(0, 1) < 0.5 ? 1 : 5);  // half of them on home links
      p.latency = uniform(0.005, 0.150);
      p.slow = uniform(0, 1) < config.slow_fraction;
      p.greedy = uniform(0, 1) < config.greedy;
      p.liar = config.liars > 0 && uniform(0, 1) < config.liars;  // drawn only then: seeds replay
      // Initial peers: three others (a run file lists a few addresses of the swarm).
      while (p.bootstrap.size() < std::min<std::size_t>(3, peers_.size() - 1)) {
        auto other = static_cast<uint32_t>(uniform_index(peers_.size()));
        if (other != i &&
            std::find(p.bootstrap.begin(), p.bootstrap.end(), other) == p.bootstrap.end())
          p.bootstrap.push_back(other);
      }
    }
    known_by_.assign(peers_.size(), 0);
  }

  swarm_simulation_report run() {
    const seconds end = config_.minutes * 60;
    // Joiners come during the first half; the others (at least two) start the swarm.
    std::vector<bool> joiner(peers_.size(), false);
    for (std::size_t i = 2; i < peers_.size(); ++i)
      joiner[i] = uniform(0, 1) < config_.joiners;
    for (auto& p : peers_)
      if (joiner[p.index])
        schedule(uniform(0.05, 0.5) * end, p.index, 0, restart_event{});
      else
        start_peer(p, 0, true);
    for (auto& p : peers_)
      if (!joiner[p.index])
        for (auto b : p.bootstrap)
          dial(p, b, true);
    for (int m = 1; m <= static_cast<int>(std::ceil(config_.minutes)); ++m)
      schedule(m * 60.0, 0, 0, minute_event{});
    if (config_.churn_per_minute > 0)
      schedule_next_crash(0);
    while (!queue_.empty() && queue_.top().at <= end) {
      // The top is moved out and popped at once (the order uses only `at` and `sequence`).
      event e = std::move(const_cast<event&>(queue_.top()));
      queue_.pop();
      clock_ = e.at;
      ++report_.events;
      dispatch(e);
    }
    finish_report(end);
    return std::move(report_);
  }

private:
  // ---- Randomness and scheduling --------------------------------------------------------------

  double uniform(double a, double b) { return std::uniform_real_distribution<double>(a, b)(rng_); }
  std::size_t uniform_index(std::size_t n) {
    return std::uniform_int_distribution<std::size_t>(0, n - 1)(rng_);
  }

  void schedule(seconds at, uint32_t to, uint64_t incarnation, payload what) {
    queue_.push(event{at, sequence_++, to, incarnation, std::move(what)});
  }
  void timer(const sim_peer& p, seconds after, timer_kind kind, uint64_t arg = 0) {
    schedule(clock_ + after, p.index, p.incarnation, timer_event{kind, arg});
  }

  bool in_cut_window() const {
    const seconds end = config_.minutes * 60;
    return clock_ >= 0.4 * end && clock_ < 0.6 * end;
  }

  // A partial partition: the link of this pair is down while both reach everyone else.
  bool link_cut(uint32_t a, uint32_t b) const {
    if (config_.cut_links <= 0 || a == b || !in_cut_window())
      return false;
    const uint64_t pair = (uint64_t{std::min(a, b)} << 32) | std::max(a, b);
    const uint64_t h = std::hash<uint64_t>{}(pair * 0x9e3779b97f4a7c15ULL ^ config_.seed);
    return static_cast<double>(h % 1000000) < config_.cut_links * 1e6;
  }

  bool partitioned(uint32_t a, uint32_t b) const {
    if (link_cut(a, b))
      return true;
    if (!config_.partition || !in_cut_window())
      return false;
    return (a % 3 == 0) != (b % 3 == 0);
  }

  // Sends over the network model: the sender's uplink is shared, the path adds both latencies.
  // Control messages may be lost and are jittered; chunks arrive reliably and in order.
  void send(sim_peer& from, uint32_t to, std::size_t bytes, payload what, bool control) {
    auto& target = peers_[to];
    if (partitioned(from.index, to))
      return;
    if (control && config_.loss > 0 && uniform(0, 1) < config_.loss)
      return;
    // Bulk data (chunks, states) queues on the uplink; control messages are small and, on
    // their own connections, not held behind it.
    const seconds start = control ? clock_ : std::max(clock_, from.uplink_free);
    const double rate = std::min(from.up, target.down);
    if (!control)
      from.uplink_free = start + static_cast<double>(bytes) / from.up;
    seconds arrival = start + static_cast<double>(bytes) / rate + from.latency + target.latency;
    if (control)
      arrival += uniform(0, config_.jitter_ms / 1000.0);
    if (control && (std::holds_alternative<hello_message>(what) ||
                    std::holds_alternative<heartbeat_message>(what)))
      gossip_bytes_ += static_cast<double>(bytes);
    schedule(arrival, to, target.incarnation, std::move(what));
  }

  void violation(const std::string& what) {
    if (report_.violations.size() < 100)
      report_.violations.push_back(fmt::format("t={:.3f}s: {}", clock_, what));
  }

  void trace(const sim_peer& p, const std::string& what) {
    if (config_.trace)
      text_ += fmt::format("t={:.3f}s peer {} epoch {}: {}\n", clock_, p.index, p.epoch, what);
  }

  // ---- Lifecycle -----------------------------------------------------------------------------

  peer_info info_of(const sim_peer& p) const {
    return {p.id, fmt::format("10.{}.{}.{}", p.index / 65536, (p.index / 256) % 256, p.index % 256),
            7000, "sim", p.incarnation, true, {}};
  }

  void start_peer(sim_peer& p, seconds when, bool initial) {
    ++p.incarnation;
    p.now = initial ? phase::training : phase::joining;
    trace(p, initial ? "started" : "joining the swarm");
    if (!initial)
      ++report_.joins;
    swarm_member self;
    self.info = info_of(p);
    swarm_view_timing timing;
    timing.suspect_after = std::chrono::milliseconds(static_cast<int64_t>(config_.suspect_after * 1000));
    timing.remove_after = std::chrono::milliseconds(static_cast<int64_t>(config_.remove_after * 1000));
    p.view = std::make_unique<swarm_view>(self, timing);
    p.reports = {};
    p.digests.assign(peers_.size(), std::nullopt);
    p.dialing.clear();
    p.known.reset();
    p.leader = std::make_unique<matchmaking_leader>(p.id, config_.group_size);
    p.tickets.clear();
    p.round.reset();
    p.group.reset();
    p.early_chunks.clear();
    p.banned.clear();  // a restarted peer's averager starts with no scores
    p.uplink_free = when;
    p.wait_bound = never;
    p.started_at = when;
    p.propagated = false;
    known_by_[p.index] = 0;
    ++up_;
    if (2 * up_ > peers_.size() && majority_since_ == never)
      majority_since_ = when;
    if (initial) {
      p.epoch = 0;
      p.state.assign(config_.vector_length, 0.0f);
      p.may_lead = true;
    } else {
      p.reports.epochs[p.id] = -1;  // elsewhere (joining): leads no epoch
    }
    if (!initial)  // the initial peers dial once all of them run
      for (auto b : p.bootstrap)
        dial(p, b, true);
    schedule(when + uniform(0, config_.gossip_interval), p.index, p.incarnation,
             timer_event{timer_kind::gossip, 0});
    if (initial)
      begin_epoch(p);
    else
      timer(p, 5, timer_kind::rejoin);
  }

  void crash(sim_peer& p) {
    if (p.now == phase::down)
      return;
    // Its round partners notice the dropped connection; everyone else notices the silence.
    if (p.round && p.group) {
      const auto me = static_cast<uint32_t>(p.round->me());
      for (std::size_t m = 0; m < p.group->peers.size(); ++m) {
        auto& other = peers_[p.group->peers[m]];
        if (m != me && other.incarnation == p.group->incarnations[m])
          schedule(clock_ + p.latency + other.latency, other.index, other.incarnation,
                   member_gone_message{p.group->round_id, me});
      }
    }
    // Its view entries of others no longer count towards their propagation.
    for (const auto& m : p.view->members())
      if (m.info.peer_id != p.id) {
        auto& other = peers_[ids_.at(m.info.peer_id)];
        if (m.info.incarnation == other.incarnation && known_by_[other.index] > 0)
          --known_by_[other.index];
      }
    trace(p, "crashed");
    p.now = phase::down;
    p.round.reset();
    p.view.reset();
    p.wait_bound = never;
    --up_;
    if (2 * up_ <= peers_.size())
      majority_since_ = never;
    ++crashes_;
    schedule(clock_ + std::max(1.0, -config_.restart_seconds * std::log(1 - uniform(0, 0.999))),
             p.index, 0, restart_event{});
  }

  void schedule_next_crash(seconds from) {
    // Crashes as a Poisson process: churn_per_minute of the peers per minute.
    const double rate = config_.churn_per_minute * static_cast<double>(peers_.size()) / 60.0;
    const seconds next = from - std::log(1 - uniform(0, 0.999)) / rate;
    schedule(next, static_cast<uint32_t>(uniform_index(peers_.size())), 0, crash_event{});
  }

  // ---- Dispatch ------------------------------------------------------------------------------

  void dispatch(event& e) {
    if (std::holds_alternative<minute_event>(e.what)) {
      on_minute();
      return;
    }
    auto& p = peers_[e.to];
    if (std::holds_alternative<crash_event>(e.what)) {
      crash(p);
      schedule_next_crash(clock_);
      return;
    }
    if (std::holds_alternative<restart_event>(e.what)) {
      if (p.now == phase::down)
        start_peer(p, clock_, false);
      return;
    }
    if (p.now == phase::down || e.incarnation != p.incarnation)
      return;  // for a process that is gone
    if (clock_ > p.wait_bound + 1e-9)
      violation(fmt::format("peer {} waited past its deadline ({}, bound t={:.3f}s)", p.index,
                            to_string(p.now), p.wait_bound));
    std::visit([&](auto& what) { on(p, what); }, e.what);
  }

  // ---- Membership ----------------------------------------------------------------------------

  // The known list that hello replies and gossip carry. Rebuilt at most every 100 ms of virtual
  // time and shared by the messages in flight: 1000 peers dialing each other at once would
  // otherwise hold a million copies of a 1000-entry list (the product sends them all; the
  // simulation only needs their contents).
  std::shared_ptr<const std::vector<peer_info>> known_list(sim_peer& p) {
    if (!p.known || clock_ - p.known_at >= 0.1) {
      p.known = std::make_shared<const std::vector<peer_info>>(p.view->other_infos());
      p.known_at = clock_;
    }
    return p.known;
  }

  std::size_t list_bytes(const std::shared_ptr<const std::vector<peer_info>>& known) const {
    return known ? known->size() * 64 : 0;
  }

  void dial(sim_peer& p, uint32_t to, bool bootstrap = false) {
    if (to == p.index || p.dialing.count(to) > 0)
      return;
    p.dialing.insert(to);
    // A hello carries the sender; the reply carries the known list too when a bootstrap dial
    // asks for it.
    send(p, to, control_bytes, hello_message{p.index, false, bootstrap, nullptr}, true);
    timer(p, config_.request_timeout, timer_kind::dial_timeout, to);
  }

  void dial_candidates(sim_peer& p, const std::vector<peer_info>& fresh) {
    for (const auto& info : fresh)
      if (auto it = ids_.find(info.peer_id); it != ids_.end())
        dial(p, it->second);
  }

  void admit(sim_peer& p, const sim_peer& them) {
    swarm_member member;
    member.info = info_of(them);
    const auto result = p.view->admit(member, at_time(clock_));
    p.dialing.erase(them.index);
    p.view->forget_candidate(them.id);
    if (result.outcome == swarm_view::admission::joined ||
        result.outcome == swarm_view::admission::replaced) {
      ++known_by_[them.index];
      if (!them.propagated && known_by_[them.index] + 1 >= up_) {
        peers_[them.index].propagated = true;
        propagation_.push_back(clock_ - them.started_at);
      }
    }
  }

  void forget_report(sim_peer& p, const std::string& id) {
    p.reports.epochs.erase(id);
    p.reports.not_leading.erase(id);
    p.digests[ids_.at(id)].reset();
  }

  void on(sim_peer& p, hello_message& m) {
    const auto& them = peers_[m.from];
    if (them.now == phase::down)
      return;
    admit(p, them);
    if (m.known)
      dial_candidates(p, p.view->learn(*m.known, at_time(clock_)));
    if (!m.reply) {
      auto known = m.want_known ? known_list(p) : nullptr;
      send(p, m.from, control_bytes + list_bytes(known),
           hello_message{p.index, true, false, known}, true);
    }
  }

  void on(sim_peer& p, heartbeat_message& m) {
    const auto& them = peers_[m.from];
    if (p.view->find(them.id) == nullptr) {
      dial_candidates(p, p.view->learn(std::vector<peer_info>{info_of(them)}, at_time(clock_)));
    } else {
      p.view->heard_from(them.id, them.incarnation, at_time(clock_));
      p.reports.epochs[them.id] = m.epoch;
      if (!m.may_lead)
        p.reports.not_leading.insert(them.id);
      else if (!p.reports.not_leading.empty())
        p.reports.not_leading.erase(them.id);
      p.digests[m.from] = reported_state{m.epoch, m.digest};
    }
    if (m.known)
      dial_candidates(p, p.view->learn(*m.known, at_time(clock_)));
    if (p.now == phase::joining || p.now == phase::missed)
      after_reports(p);
    else if (p.now == phase::training && m.epoch >= p.epoch + 2)
      download(p, m.from);  // fell behind
  }

  void gossip(sim_peer& p) {
    auto liveness = p.view->check_liveness(at_time(clock_));
    report_.suspicions += liveness.suspected.size();
    for (const auto& info : liveness.suspected) {
      const auto& other = peers_[ids_.at(info.peer_id)];
      if (other.now != phase::down && other.incarnation == info.incarnation)
        ++report_.false_suspicions;  // it is up: its heartbeats were late or lost
    }
    for (const auto& gone : liveness.timed_out) {
      forget_report(p, gone.info.peer_id);
      auto& other = peers_[ids_.at(gone.info.peer_id)];
      if (gone.info.incarnation == other.incarnation && known_by_[other.index] > 0)
        --known_by_[other.index];
    }
    const auto others = p.view->other_infos();
    std::vector<std::size_t> fanout;
    for (std::size_t k = 0; k < std::min(config_.gossip_fanout, others.size()); ++k)
      fanout.push_back(uniform_index(others.size()));
    auto known = known_list(p);
    const bool ready = p.now == phase::matchmaking || p.now == phase::averaging;
    const auto digest = p.now == phase::joining ? 0 : digest_of(p);
    const auto epoch = p.now == phase::joining ? int64_t{-1} : p.epoch;
    for (std::size_t i = 0; i < others.size(); ++i) {
      const bool full = std::find(fanout.begin(), fanout.end(), i) != fanout.end();
      heartbeat_message beat{p.index, epoch, digest, p.may_lead, ready, full ? known : nullptr};
      send(p, ids_.at(others[i].peer_id), control_bytes + (full ? list_bytes(known) : 0),
           std::move(beat), true);
    }
    for (const auto& [id, info] : p.view->candidates())
      if (auto it = ids_.find(id); it != ids_.end())
        dial(p, it->second);
    timer(p, config_.gossip_interval, timer_kind::gossip);
    // The leader's rounds close when awaited peers moved on or left.
    assign(p, p.leader->close_full_rounds(knowledge(p)));
  }

  // ---- Progress, state agreement and downloads -----------------------------------------------

  uint64_t digest_of(const sim_peer& p) const {
    return state_digest_of(std::span<const float>(p.state));
  }

  std::vector<std::string> member_ids(const sim_peer& p) const {
    std::vector<std::string> ids;
    for (const auto& m : p.view->members())
      ids.push_back(m.info.peer_id);
    return ids;
  }

  matchmaking_leader::swarm_knowledge knowledge(sim_peer& p) {
    member_ids_scratch_ = member_ids(p);
    if (p.banned.empty())
      return {p.reports, member_ids_scratch_};
    // As the averager does: banned peers count as being at no epoch (nobody waits for them).
    reports_scratch_ = p.reports;
    for (auto banned : p.banned)
      if (auto it = reports_scratch_.epochs.find(peers_[banned].id);
          it != reports_scratch_.epochs.end())
        it->second = -1;
    return {reports_scratch_, member_ids_scratch_};
  }

  // The most advanced peer this one hears of, and its epoch.
  std::optional<std::pair<uint32_t, int64_t>> most_advanced(const sim_peer& p) const {
    std::optional<std::pair<uint32_t, int64_t>> best;
    for (const auto& [id, epoch] : p.reports.epochs)
      if (id != p.id && (!best || epoch > best->second))
        best = std::make_pair(ids_.at(id), epoch);
    return best;
  }

  void after_reports(sim_peer& p) {
    if (p.now == phase::joining) {
      // A (re)started peer takes the state of the most advanced peer it hears of.
      if (auto best = most_advanced(p))
        download(p, best->first);
    } else if (p.now == phase::missed) {
      if (auto best = most_advanced(p); best && best->second > p.epoch)
        download(p, best->first);
    }
  }

  // A peer whose state differs from the one most peers of its epoch hold takes theirs, judged
  // once the epoch's reports are in (the progress actor judges at two report intervals running).
  // Returns whether a download started.
  bool check_agreement(sim_peer& p) {
    if (p.repair_checked)
      return false;
    std::vector<state_digest_report> reports{{p.id, digest_of(p)}};
    for (uint32_t i = 0; i < p.digests.size(); ++i)
      if (p.digests[i] && p.digests[i]->epoch == p.epoch) {
        reports.push_back({peers_[i].id, p.digests[i]->digest});
        const auto& other = peers_[i];
        // Invariant 4: the same epoch and digest, the same values (checked while the other
        // still holds the state it reported; a download may have replaced it since).
        if (p.digests[i]->digest == reports[0].digest && other.epoch == p.epoch &&
            other.now != phase::down && other.now != phase::joining &&
            digest_of(other) == reports[0].digest && other.state != p.state)
          violation(fmt::format("peers {} and {} report epoch {} and digest {:016x} but hold "
                                "different values",
                                p.index, i, p.epoch, reports[0].digest));
      }
    if (reports.size() < 3)
      return false;
    p.repair_checked = true;
    const auto agreed = state_to_take(reports, reports[0].digest, config_.group_size);
    if (!agreed || agreed->holders.size() < 2)
      return false;
    download(p, ids_.at(agreed->holders.front()));
    return true;
  }

  void download(sim_peer& p, uint32_t from) {
    trace(p, fmt::format("downloading from {}", from));
    p.now = phase::downloading;
    p.round.reset();
    p.wait_bound = clock_ + config_.request_timeout + 30;
    send(p, from, control_bytes, state_request_message{p.index}, true);
    timer(p, config_.request_timeout + 29.5, timer_kind::download_timeout);
  }

  void on(sim_peer& p, state_request_message& m) {
    if (p.now == phase::joining)
      return;  // nothing to serve yet
    auto state = std::make_shared<const std::vector<float>>(p.state);
    send(p, m.from, control_bytes + state->size() * sizeof(float),
         state_reply_message{p.epoch, digest_of(p), state}, false);
  }

  void on(sim_peer& p, state_reply_message& m) {
    if (p.now != phase::downloading)
      return;
    p.state = *m.state;
    if (digest_of(p) != m.digest)
      violation(fmt::format("peer {} downloaded a state whose digest differs", p.index));
    // Reached by a download from further back than the epoch before, it joins this epoch's
    // round and never leads it (members did not count it); one epoch on, it was counted.
    p.may_lead = m.epoch <= p.reports.epochs[p.id] + 1;
    p.epoch = m.epoch;
    ++report_.downloads;
    begin_epoch(p);
  }

  // ---- Training and matchmaking, member side ---------------------------------------------------

  void begin_epoch(sim_peer& p) {
    trace(p, "training");
    p.now = phase::training;
    p.repair_checked = false;
    p.wait_bound = never;
    p.reports.epochs[p.id] = p.epoch;
    if (p.may_lead)
      p.reports.not_leading.erase(p.id);
    else
      p.reports.not_leading.insert(p.id);
    if (p.epoch > max_epoch_) {
      max_epoch_ = p.epoch;
      last_advance_ = clock_;
    }
    timer(p, config_.epoch_seconds * uniform(0.95, 1.05), timer_kind::compute_done,
          static_cast<uint64_t>(p.epoch));
  }

  // A synthetic contribution: multiples of 2^-10 in [-4, 4], so sums are exact in double.
  std::vector<float> contribution_of(const sim_peer& p) {
    std::vector<float> values(config_.vector_length);
    for (auto& v : values)
      v = std::ldexp(static_cast<float>(static_cast<int>(uniform_index(8193)) - 4096), -10);
    return values;
  }

  void compute_done(sim_peer& p) {
    if (check_agreement(p))
      return;
    p.contribution = contribution_of(p);
    p.weight = (p.slow ? 0.25 : 1.0) * (p.greedy ? 1000.0 : 1.0) * config_.epoch_seconds * 100;
    p.now = phase::matchmaking;
    p.failed_leaders.clear();
    for (auto banned : p.banned)
      p.failed_leaders.insert(peers_[banned].id);  // never asked to lead
    p.join_deadline = clock_ + 2 * config_.matchmaking_time;
    p.wait_bound = p.join_deadline + config_.request_timeout;
    join_next(p);
  }

  void join_next(sim_peer& p) {
    const auto leader = next_leader(p.reports, member_ids(p), p.epoch, p.failed_leaders,
                                    p.leader->is_open(p.epoch) ? p.id : std::string());
    if (leader.empty() || clock_ >= p.join_deadline) {
      if (swarm_past(p.reports, p.id, p.epoch))
        miss_round(p);  // the swarm averaged this epoch without us
      else
        end_round(p, round_result::alone, nullptr);
      return;
    }
    const auto attempt = ++p.join_attempt;
    const uint32_t to = ids_.at(leader);
    trace(p, fmt::format("joining leader {}", to));
    p.failed_leaders.insert(leader);  // answered or not, not asked twice
    send(p, to, control_bytes, join_message{p.index, p.epoch, p.weight, attempt}, true);
    timer(p, p.join_deadline - clock_ + config_.request_timeout, timer_kind::join_timeout,
          attempt);
  }

  // The round formed without this peer: it applies nothing and takes the swarm's next state.
  void miss_round(sim_peer& p) {
    trace(p, "missed the round");
    p.now = phase::missed;
    p.wait_bound = clock_ + 2 * config_.matchmaking_time + config_.allreduce_timeout + 1;
    ++report_.rounds_missed;
    timer(p, 2 * config_.matchmaking_time + config_.allreduce_timeout, timer_kind::missed_wait,
          static_cast<uint64_t>(p.epoch));
    after_reports(p);
  }

  void on(sim_peer& p, join_reply_message& m) {
    if (p.now != phase::matchmaking || m.epoch != p.epoch || m.attempt != p.join_attempt)
      return;
    using verdict = matchmaking_leader::verdict;
    switch (m.verdict) {
      case verdict::accepted: start_round(p, m.group); return;
      case verdict::closed: miss_round(p); return;
      case verdict::not_leader:
      case verdict::shape_mismatch: join_next(p); return;
    }
  }

  // ---- Matchmaking, leader side ----------------------------------------------------------------

  void on(sim_peer& p, join_message& m) {
    if (p.banned.count(m.from) != 0) {  // refused: it tries the next leader
      send(p, m.from, control_bytes,
           join_reply_message{m.epoch, m.attempt, matchmaking_leader::verdict::not_leader, {}},
           true);
      return;
    }
    const auto ticket = p.next_ticket++;
    auto answer = p.leader->on_join(
      {peers_[m.from].id, m.epoch, m.weight, config_.vector_length, 0.0, ticket, true},
      knowledge(p));
    if (answer.outcome != matchmaking_leader::verdict::accepted) {
      send(p, m.from, control_bytes, join_reply_message{m.epoch, m.attempt, answer.outcome, {}},
           true);
      return;
    }
    // A retry replaces the same peer's earlier join of the epoch.
    std::erase_if(p.tickets, [&](const auto& t) {
      return t.second.peer == m.from && t.second.epoch == m.epoch;
    });
    p.tickets[ticket] = {m.from, m.attempt, m.epoch};
    if (answer.opened)
      timer(p, config_.matchmaking_time, timer_kind::close_epoch, static_cast<uint64_t>(m.epoch));
    assign(p, std::move(answer.formed));
  }

  void assign(sim_peer& p, std::vector<matchmaking_leader::group> groups) {
    for (auto& formed : groups) {
      auto group = std::make_shared<assignment>();
      group->round_id = rng_();
      group->epoch = formed.epoch;
      std::vector<uint64_t> attempts;
      for (std::size_t m = 0; m < formed.members.size(); ++m) {
        const auto [peer, attempt, epoch] = p.tickets.at(formed.members[m].ticket);
        p.tickets.erase(formed.members[m].ticket);
        group->peers.push_back(peer);
        group->incarnations.push_back(peers_[peer].incarnation);
        group->weights.push_back(formed.members[m].weight);
        group->shares.push_back(formed.shares[m]);
        attempts.push_back(attempt);
      }
      for (std::size_t m = 0; m < group->peers.size(); ++m)
        send(p, group->peers[m], control_bytes * group->peers.size(),
             join_reply_message{formed.epoch, attempts[m], matchmaking_leader::verdict::accepted,
                                group},
             true);
    }
  }

  // ---- The round -----------------------------------------------------------------------------

  void start_round(sim_peer& p, std::shared_ptr<const assignment> group) {
    const auto at = std::find(group->peers.begin(), group->peers.end(), p.index);
    if (at == group->peers.end())
      return;
    round_setup setup;
    setup.round_id = group->round_id;
    for (std::size_t m = 0; m < group->peers.size(); ++m)
      setup.members.push_back({group->weights[m], group->shares[m], {}, {}});
    setup.me = static_cast<uint32_t>(at - group->peers.begin());
    setup.values = std::make_shared<const std::vector<float>>(p.contribution);
    setup.chunk_elements = config_.chunk_elements;
    setup.max_weight_ratio = config_.max_weight_ratio;
    if (p.key) {
      for (std::size_t m = 0; m < group->peers.size(); ++m)
        setup.members[m].peer_id = peers_[group->peers[m]].id;
      setup.signer = p.key;
      setup.check_signatures = true;
      setup.keep_evidence = true;
    }
    p.audited.clear();
    p.last_result.reset();
    record_contribution(group->round_id, setup.me, p.contribution);
    p.group = std::move(group);
    p.round = std::make_unique<butterfly_round>(std::move(setup));
    p.now = phase::averaging;
    p.wait_bound = clock_ + config_.allreduce_timeout;
    timer(p, config_.allreduce_timeout, timer_kind::round_deadline, p.group->round_id);
    act(p, p.round->start());
    // A round partner behind a cut link: its heartbeats stop, and the link is reported down.
    for (std::size_t m = 0; m < p.group->peers.size(); ++m)
      if (p.group->peers[m] != p.index && link_cut(p.index, p.group->peers[m]))
        schedule(clock_ + config_.suspect_after, p.index, p.incarnation,
                 member_gone_message{p.group->round_id, static_cast<uint32_t>(m)});
    auto early = std::move(p.early_chunks[p.group->round_id]);
    p.early_chunks.clear();
    for (auto& chunk : early)
      if (p.round)
        act(p, p.round->chunk_arrived(std::move(chunk)));
  }

  void act(sim_peer& p, std::vector<round_action> actions) {
    // Coding costs no virtual time: a job's result goes straight back into the round.
    std::vector<round_action> work = std::move(actions);
    for (std::size_t i = 0; i < work.size() && p.round; ++i) {
      auto& action = work[i];
      std::vector<round_action> more;
      if (auto* e = std::get_if<round_encode>(&action)) {
        if (p.liar && e->role == chunk_role::gather_out)
          for (auto& v : e->job.own_values())
            v = -v;
        more = p.round->chunk_coded(e->tag, run_chunk_job(std::move(e->job)));
      } else if (auto* d = std::get_if<round_decode>(&action)) {
        more = p.round->chunk_coded(d->tag, run_chunk_job(std::move(d->job)));
      } else if (auto* s = std::get_if<round_send>(&action)) {
        const auto bytes = s->chunk.blob.bytes.size() + control_bytes;
        send(p, p.group->peers[s->to], bytes,
             chunk_message{p.group->round_id,
                           std::make_shared<allreduce_chunk>(std::move(s->chunk))},
             false);
      } else if (auto* done = std::get_if<round_done>(&action)) {
        on_round_done(p, *done);
      } else if (auto* failure = std::get_if<round_failure>(&action)) {
        if (failure->why == round_failure::cause::excluded) {
          // As the product does: the others went on without this peer; take their next state.
          trace(p, "round ended: excluded");
          p.round.reset();
          miss_round(p);
        } else {
          end_round(p, round_result::failed, nullptr);
        }
        return;
      }
      for (auto& a : more)
        work.push_back(std::move(a));
    }
  }

  void on_round_done(sim_peer& p, const round_done& done) {
    const auto& group = *p.group;
    const std::vector<float>* result = done.values.get();
    std::vector<float> tampered;
    if (config_.inject_wrong_result && done.group_size > 1 && !injected_) {
      injected_ = true;  // the checker's own test: one member's result, as checked, is off by one
      tampered = *result;
      tampered[0] += 1.0f;
      result = &tampered;
    }
    // Invariant 1: the weighted mean of the last attempt's contributions (with the weights the
    // round uses: claims bounded by max_weight_ratio x the group's median).
    const auto used = bounded_weights(group.weights, config_.max_weight_ratio);
    std::vector<const std::vector<float>*> inputs;
    std::vector<double> weights;
    for (std::size_t m = 0; m < group.peers.size(); ++m)
      if ((done.member_set >> m) & 1u) {
        const auto key = std::make_pair(group.round_id, static_cast<uint32_t>(m));
        auto it = contributions_.find(key);
        if (it == contributions_.end())
          continue;
        inputs.push_back(&it->second);
        weights.push_back(used[m]);
      }
    // Parts that liars reduced are wrong by design (their own peers' results are not checked).
    std::vector<bool> poisoned(result->size(), false);
    std::size_t poisoned_parts = 0;
    for (auto reducer : p.round->reducers_of_last_attempt())
      if (peers_[group.peers[reducer]].liar)
        if (auto plan = p.round->audit_plan_for(reducer, *result)) {
          std::fill(poisoned.begin() + static_cast<std::ptrdiff_t>(plan->part.begin),
                    poisoned.begin() + static_cast<std::ptrdiff_t>(plan->part.end), true);
          if (!p.liar)
            ++poisoned_parts;
        }
    report_.poisoned_parts += poisoned_parts;
    if (!p.liar && inputs.size() == static_cast<std::size_t>(std::popcount(done.member_set))) {
      double total = 0;
      for (auto w : weights)
        total += w;
      for (std::size_t i = 0; i < result->size(); ++i) {
        if (poisoned[i])
          continue;
        double sum = 0;
        for (std::size_t j = 0; j < inputs.size(); ++j)
          sum += weights[j] * (*inputs[j])[i];
        const double expected = sum / total;
        if (std::fabs((*result)[i] - expected) > 1e-6 * std::max(1.0, std::fabs(expected))) {
          violation(fmt::format("round {:016x}: peer {} holds {} at {}, the weighted mean is {}",
                                group.round_id, p.index, (*result)[i], i, expected));
          break;
        }
      }
    }
    // Invariant 2: the same round and member set, the same digest.
    auto [it, fresh] = round_digests_.try_emplace({group.round_id, done.member_set}, done.digest);
    if (!fresh && it->second != done.digest)
      violation(fmt::format("round {:016x}: peer {} ended with another digest", group.round_id,
                            p.index));
    for (std::size_t m = 0; m < group.peers.size(); ++m)
      if (m != p.round->me() && (((done.member_set | done.left_out) >> m) & 1u))
        send(p, group.peers[m], control_bytes,
             digest_message{group.round_id, p.round->me(), done.member_set, done.digest}, true);
    if (p.key && !p.liar)
      p.last_result = done.values;
    if (p.key && !p.liar && done.group_size > 1 &&
        uniform(0, 1) < config_.audit_probability) {
      const auto reducers = p.round->reducers_of_last_attempt();
      if (!reducers.empty())
        audit(p, reducers[uniform_index(reducers.size())], *done.values, true);
    }
    end_round(p, done.group_size > 1 ? round_result::averaged : round_result::alone, &done,
              poisoned_parts);
  }

  // A proven lie in round `round_id`: back to the state from before it where it is the last
  // round applied (actors/trainer_swarm.cpp: discard_round), or not applied at all where it is
  // not applied yet (the sim's audits take no time: an own audit ends before its round's
  // update); too late after a later round.
  void discard(sim_peer& p, uint64_t round_id) {
    if (p.applied_round == round_id) {
      p.state = std::move(p.state_before_round);
      p.applied_round = 0;
      ++report_.discarded_rounds;
      report_.discarded_parts += p.applied_poisoned_parts;
      trace(p, "discarded the last round");
    } else if (p.group && p.group->round_id == round_id && p.caught_round != round_id) {
      p.caught_round = round_id;
    } else if (p.caught_round != round_id) {
      ++report_.discards_too_late;
    }
  }

  // Member `p` audits reducer `reducer` of its current round with the evidence the reducer
  // shows (read directly: the product fetches it). A lie bans the reducer here and discards the
  // round, and, when the audit was this peer's own pick, goes to the other members as an
  // accusation with its proof.
  void audit(sim_peer& p, uint32_t reducer, const std::vector<float>& result, bool own) {
    if (!p.audited.insert(reducer).second)
      return;
    auto plan = p.round->audit_plan_for(reducer, result);
    auto& q = peers_[p.group->peers[reducer]];
    if (!plan || !q.round || !q.group || q.group->round_id != p.group->round_id)
      return;  // it moved on or went down: the product counts an unanswered audit
    ++report_.audits;
    const auto member_set = plan->member_set;
    reducer_audit check(sample_pieces(std::move(*plan), 2, rng_()));
    std::optional<std::string> refused;
    for (const auto& evidence : q.round->audit_evidence_of_our_part(member_set))
      if (check.wants(evidence) && (refused = check.add(evidence)))
        break;
    if (!refused && check.verdict().honest)
      return;
    ++report_.lies_caught;
    if (!q.liar)
      violation(fmt::format("round {:016x}: peer {} found honest reducer {} lying: {}",
                            p.group->round_id, p.index, q.index,
                            refused ? *refused : check.verdict().detail));
    if (p.banned.insert(q.index).second)
      ++report_.bans;
    trace(p, fmt::format("caught reducer {} lying", q.index));
    discard(p, p.group->round_id);
    if (!own)
      return;
    auto proof = std::make_shared<const std::vector<audit_evidence>>(
      refused ? std::vector<audit_evidence>{} : check.evidence());
    std::size_t bytes = control_bytes;
    for (const auto& evidence : *proof)
      bytes += evidence.blob.bytes.size() + control_bytes;
    for (std::size_t m = 0; m < p.group->peers.size(); ++m)
      if (m != p.round->me() && m != reducer && ((p.round->member_set() >> m) & 1u))
        send(p, p.group->peers[m], bytes, accusation_message{p.group->round_id, reducer, proof},
             true);
  }

  void end_round(sim_peer& p, round_result result, const round_done* done,
                 std::size_t poisoned_parts = 0) {
    trace(p, fmt::format("round ended: {}", to_string(result)));
    switch (result) {
      case round_result::averaged: ++report_.rounds_averaged; break;
      case round_result::alone: ++report_.rounds_alone; break;
      case round_result::failed: ++report_.rounds_failed; break;
      case round_result::missed: ++report_.rounds_missed; break;
    }
    const auto& update = done ? *done->values : p.contribution;
    const uint64_t round_id = p.group ? p.group->round_id : 0;
    if (p.caught_round != 0 && p.caught_round == round_id) {
      ++report_.discarded_rounds;  // proven poisoned before it was applied: nothing to apply
      report_.discarded_parts += poisoned_parts;
      trace(p, "discarded the round before applying it");
    } else {
      p.applied_round = 0;
      if (result == round_result::averaged && p.key && !p.liar &&
          config_.audit_probability > 0) {
        p.state_before_round = p.state;
        p.applied_round = round_id;
        p.applied_poisoned_parts = poisoned_parts;
      }
      for (std::size_t i = 0; i < p.state.size(); ++i)
        p.state[i] += update[i];
    }
    // A finished round lingers for its digests; the state machine itself needs no more events.
    if (done == nullptr)
      p.round.reset();
    ++p.epoch;
    p.may_lead = true;
    begin_epoch(p);
  }

  void on(sim_peer& p, chunk_message& m) {
    if (p.round && p.group && p.group->round_id == m.round_id) {
      act(p, p.round->chunk_arrived(std::move(*m.chunk)));
      return;
    }
    if (p.now == phase::matchmaking) {
      auto& early = p.early_chunks[m.round_id];
      if (early.size() < 4096)
        early.push_back(std::move(*m.chunk));
    }
  }

  void on(sim_peer& p, digest_message& m) {
    if (!p.round || !p.group || p.group->round_id != m.round_id)
      return;
    auto actions = p.round->digest_arrived(m.sender, m.member_set, m.digest);
    for (const auto& action : actions)
      if (const auto* checked = std::get_if<round_digest_checked>(&action);
          checked && !checked->matches && !checked->left_us_out)
        violation(fmt::format("round {:016x}: peer {} got a digest that differs", m.round_id,
                              p.index));
    act(p, std::move(actions));
  }

  void on(sim_peer& p, accusation_message& m) {
    // Checked before it is believed: with its proof against this peer's result
    // (check_accusation_proof), or, without one of this attempt, by auditing the reducer.
    if (!p.key || p.liar || !p.round || !p.group || p.group->round_id != m.round_id ||
        p.round->state() != butterfly_round::status::done || !p.last_result)
      return;
    const auto& proof = *m.proof;
    if (proof.empty() || proof.front().member_set != p.round->member_set()) {
      audit(p, m.reducer, *p.last_result, false);
      return;
    }
    auto plan = p.round->audit_plan_for(m.reducer, *p.last_result);
    if (!plan || !p.audited.insert(m.reducer).second)
      return;
    const auto finding = check_accusation_proof(std::move(*plan), proof);
    auto& q = peers_[p.group->peers[m.reducer]];
    if (finding.result != proof_finding::kind::confirmed || !q.liar) {
      violation(fmt::format("round {:016x}: peer {} found the proof against reducer {} {}: {}",
                            m.round_id, p.index, q.index,
                            finding.result == proof_finding::kind::confirmed ? "holds"
                                                                             : "does not hold",
                            finding.detail));
      return;
    }
    ++report_.lies_caught;
    if (p.banned.insert(q.index).second)
      ++report_.bans;
    trace(p, fmt::format("convinced by a proof that reducer {} lied", q.index));
    discard(p, m.round_id);
  }

  void on(sim_peer& p, member_gone_message& m) {
    if (p.round && p.group && p.group->round_id == m.round_id)
      act(p, p.round->member_gone(m.member));
  }

  // ---- Timers ----------------------------------------------------------------------------------

  void on(sim_peer& p, timer_event& t) {
    switch (t.kind) {
      case timer_kind::gossip: gossip(p); return;
      case timer_kind::compute_done:
        if (p.now == phase::training && static_cast<int64_t>(t.arg) == p.epoch)
          compute_done(p);
        return;
      case timer_kind::join_timeout:
        if (p.now == phase::matchmaking && t.arg == p.join_attempt)
          join_next(p);
        return;
      case timer_kind::close_epoch:
        assign(p, p.leader->close(static_cast<int64_t>(t.arg)));
        return;
      case timer_kind::round_deadline:
        if (p.now == phase::averaging && p.group && p.group->round_id == t.arg && p.round)
          act(p, p.round->deadline_passed());
        return;
      case timer_kind::missed_wait:
        if (p.now == phase::missed && static_cast<int64_t>(t.arg) == p.epoch) {
          // The swarm did not move on: train on from here.
          trace(p, "the swarm did not move on; training on");
          ++p.epoch;
          begin_epoch(p);
        }
        return;
      case timer_kind::download_timeout:
        if (p.now == phase::downloading) {
          trace(p, "download timed out");
          p.now = phase::joining;  // try again with whoever is reported next
          p.wait_bound = never;
          after_reports(p);
        }
        return;
      case timer_kind::dial_timeout:
        if (p.dialing.erase(static_cast<uint32_t>(t.arg)) > 0)
          p.view->forget_candidate(peers_[t.arg].id);
        return;
      case timer_kind::rejoin:
        if (p.now == phase::joining) {
          for (auto b : p.bootstrap)
            dial(p, b, true);
          timer(p, 5, timer_kind::rejoin);
        }
        return;
    }
  }

  void on(sim_peer&, crash_event&) {}
  void on(sim_peer&, restart_event&) {}
  void on(sim_peer&, minute_event&) {}

  // ---- Minutes and the report ------------------------------------------------------------------

  void on_minute() {
    const int minute = static_cast<int>(std::lround(clock_ / 60));
    const seconds end = config_.minutes * 60;
    int64_t lowest = std::numeric_limits<int64_t>::max(), highest = 0;
    for (const auto& p : peers_)
      if (p.now != phase::down) {
        lowest = std::min(lowest, p.epoch);
        highest = std::max(highest, p.epoch);
      }
    if (up_ == 0)
      lowest = 0;
    // Invariant 5: with a majority up and no partition, the highest epoch advances within the
    // longest wait the protocol's own deadlines allow, twice over: an epoch's compute, a missed
    // round's wait for the swarm's next state (2 x matchmaking_time + allreduce_timeout).
    const seconds stall_bound =
      2 * (config_.epoch_seconds + 2 * config_.matchmaking_time + config_.allreduce_timeout);
    // (A partial partition, cut links, is not excused: rounds must agree without the cut links.)
    const bool partition_now = config_.partition && clock_ >= 0.4 * end && clock_ < 0.6 * end;
    seconds reference = std::max(last_advance_, majority_since_);
    if (config_.partition && clock_ >= 0.6 * end)
      reference = std::max(reference, 0.6 * end);
    if (2 * up_ > peers_.size() && !partition_now && clock_ - reference > stall_bound)
      violation(fmt::format("the swarm's highest epoch stayed at {} for {:.0f} s with a majority "
                            "up ({} of {} now)",
                            max_epoch_, clock_ - reference, up_, peers_.size()));
    text_ += fmt::format(
      "minute {:3}: up {}/{}, epochs {}..{}, rounds averaged {} alone {} failed {} missed {}, "
      "downloads {}, suspicions {} (false {}), crashes {}\n",
      minute, up_, peers_.size(), lowest, highest, report_.rounds_averaged, report_.rounds_alone,
      report_.rounds_failed, report_.rounds_missed, report_.downloads, report_.suspicions,
      report_.false_suspicions, crashes_);
  }

  void finish_report(seconds end) {
    contributions_.clear();
    report_.gossip_bytes_per_peer_second =
      gossip_bytes_ / (static_cast<double>(peers_.size()) * std::max(end, 1.0));
    if (!propagation_.empty()) {
      double sum = 0;
      for (auto s : propagation_)
        sum += s;
      report_.join_propagation_mean_seconds = sum / static_cast<double>(propagation_.size());
      report_.join_propagation_max_seconds =
        *std::max_element(propagation_.begin(), propagation_.end());
    }
    report_.epochs_per_minute = static_cast<double>(max_epoch_) / std::max(config_.minutes, 1e-9);
    text_ += fmt::format(
      "totals: {} events, rounds averaged {} alone {} failed {} missed {}, downloads {}, "
      "suspicions {} (false {}), crashes {}\n",
      report_.events, report_.rounds_averaged, report_.rounds_alone, report_.rounds_failed,
      report_.rounds_missed, report_.downloads, report_.suspicions, report_.false_suspicions,
      crashes_);
    text_ += fmt::format("joins {} (restarts included)\n", report_.joins);
    if (config_.audit_probability > 0 || config_.liars > 0) {
      std::size_t liars = 0;
      for (const auto& p : peers_)
        liars += p.liar ? 1 : 0;
      text_ += fmt::format("liars {}: audits {}, lies caught {}, bans {}, poisoned parts applied "
                           "by honest peers {}, discarded again {} (in {} rounds; {} proven too "
                           "late)\n",
                           liars, report_.audits, report_.lies_caught, report_.bans,
                           report_.poisoned_parts, report_.discarded_parts,
                           report_.discarded_rounds, report_.discards_too_late);
    }
    text_ += fmt::format(
      "figures: gossip {:.0f} bytes per peer per second, a join reaches every view in {:.2f} s "
      "(max {:.2f} s, {} joins), {:.2f} epochs per minute\n",
      report_.gossip_bytes_per_peer_second, report_.join_propagation_mean_seconds,
      report_.join_propagation_max_seconds, propagation_.size(), report_.epochs_per_minute);
    text_ += report_.violations.empty()
               ? std::string("invariants: all held\n")
               : fmt::format("invariants: {} violations\n", report_.violations.size());
    for (const auto& v : report_.violations)
      text_ += "  " + v + "\n";
    report_.text = std::move(text_);
  }

  // Contributions by (round, member index), for invariant 1, as rounds start; the oldest go
  // once many are kept (their rounds ended long ago).
  void record_contribution(uint64_t round_id, uint32_t member, const std::vector<float>& values) {
    const auto key = std::make_pair(round_id, member);
    contributions_[key] = values;
    contribution_order_.push_back(key);
    while (contribution_order_.size() > 50000) {
      contributions_.erase(contribution_order_.front());
      contribution_order_.pop_front();
    }
  }

  swarm_simulation_config config_;
  std::mt19937_64 rng_;
  std::vector<sim_peer> peers_;
  std::map<std::string, uint32_t> ids_;
  std::priority_queue<event, std::vector<event>, later_first> queue_;
  uint64_t sequence_ = 0;
  seconds clock_ = 0;
  std::size_t up_ = 0;
  seconds majority_since_ = never;  // since when more than half of the peers are up
  seconds last_advance_ = 0;        // when the highest epoch last grew
  uint64_t crashes_ = 0;
  int64_t max_epoch_ = 0;
  double gossip_bytes_ = 0;
  std::vector<std::size_t> known_by_;
  std::vector<double> propagation_;
  std::vector<std::string> member_ids_scratch_;
  epoch_reports reports_scratch_;
  std::map<std::pair<uint64_t, uint32_t>, std::vector<float>> contributions_;
  std::deque<std::pair<uint64_t, uint32_t>> contribution_order_;
  std::map<std::pair<uint64_t, uint64_t>, uint64_t> round_digests_;
  std::string text_;
  bool injected_ = false;
  swarm_simulation_report report_;
};

} // namespace

swarm_simulation_report run_swarm_simulation(const swarm_simulation_config& config) {
  return swarm_simulation(config).run();
}

std::string replay_command(const swarm_simulation_config& c) {
  return fmt::format(
    "ddactor_swarm_sim --peers {} --seed {} --minutes {} --joiners {} --churn {} --loss {} "
    "--restart-seconds {} --slow {} --greedy {} --group-size {} --length {} --chunk {}{}{}{}",
    c.peers, c.seed, c.minutes, c.joiners, c.churn_per_minute, c.loss, c.restart_seconds,
    c.slow_fraction, c.greedy, c.group_size, c.vector_length, c.chunk_elements,
    c.partition ? " --partition" : "",
    c.cut_links > 0 ? fmt::format(" --cut-links {}", c.cut_links) : std::string(),
    c.audit_probability > 0 || c.liars > 0
      ? fmt::format(" --liars {} --audit {}", c.liars, c.audit_probability)
      : std::string());
}

} // namespace ddactor
