// One peer's side of a butterfly all-reduce: drives runtime/allreduce/butterfly_round with real
// messages; see averaging_group.hpp.
#include "actors/averaging_group.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <csignal>
#include <limits>
#include <map>
#include <optional>
#include <random>
#include <stdexcept>
#include <thread>

#include "actors/local_control.hpp"
#include "monitoring/ddactor_metrics.hpp"
#include "runtime/actor_ticks.hpp"
#include "runtime/allreduce/butterfly_round.hpp"
#include "runtime/allreduce/link_rate_estimate.hpp"
#include "runtime/allreduce/reducer_audit.hpp"
#include "runtime/allreduce/round_deadline.hpp"

namespace ddactor {

namespace {

using clock_type = std::chrono::steady_clock;

// How long a finished member waits for the others' digests before it leaves.
constexpr auto digest_wait = std::chrono::seconds(5);
// Chunks that arrive before this member's own assignment are kept, up to this many.
constexpr size_t max_early_chunks = 4096;
// Rates above this (bytes per second: 1 Tbit/s) are no measurement.
constexpr double max_plausible_rate = 125e9;
// A reducer shows its evidence for at least this long after its round, and an auditor waits for
// it at least this long (both stretch with the round's own duration, for slow links).
constexpr auto audit_window = std::chrono::seconds(10);
// Pieces of the reducer's part one audit checks (reducer_audit.hpp: sample_pieces).
constexpr size_t audited_pieces = 2;
// At most one liveness note per member to membership in this interval.
constexpr auto alive_note_interval = std::chrono::milliseconds(200);

// A stream this small says more about latency than rate.
constexpr uint64_t min_stream_bytes = 64 * 1024;

// The chunks one member sent us: how many bytes, and when the last arrived.
struct received_stream {
  uint64_t bytes = 0;
  clock_type::time_point last;

  // Bytes per second since the round started here (0: too few bytes). From the start, not from
  // the first chunk: a part of one or two chunks arrives all at once after a long transfer, and
  // a window from its first chunk made 10 Mbit/s links look like 100 (a leader then gave them
  // every part). A lower bound, as the estimate wants (link_rate_estimate.hpp).
  double rate(clock_type::time_point started) const {
    const double seconds = std::chrono::duration<double>(last - started).count();
    return bytes >= min_stream_bytes && seconds > 0 ? static_cast<double>(bytes) / seconds : 0;
  }
};

struct group_state {
  averaging_group_options options;
  group_assignment assignment;
  std::optional<butterfly_round> round;  // from the assignment on
  std::vector<allreduce_chunk> early_chunks;
  bool finished = false;  // the outcome went to the averager
  std::set<std::string> offenders;  // members that sent invalid chunks
  // The round's deadline, then (once done) how long digests are awaited; checked on ticks
  // (runtime/actor_ticks.hpp), so a group that quit is not held by a timer.
  clock_type::time_point started = clock_type::now();
  std::chrono::milliseconds round_timeout{0};  // the assignment's, clamped to our bounds
  clock_type::time_point deadline;
  clock_type::time_point digest_deadline;
  uint64_t bytes_sent = 0;
  uint64_t bytes_received = 0;
  std::vector<clock_type::time_point> last_alive_note;  // per member
  // What arrived from each member, for the link-rate measurement (link_rate_estimate.hpp).
  std::vector<received_stream> received;
  // The other members' view of our upload, from their digests.
  uint64_t upload_bytes = 0;
  double upload_rate = 0;
  bool rates_reported = false;
  // Coding jobs out, by tag: which compressor has each, and how many each has.
  std::map<uint64_t, size_t> job_compressor;
  std::vector<size_t> compressor_load;
  size_t scatter_chunks_sent = 0;  // for fault injection
  // Audits, once the round is done: the result as applied here (only while auditing), the
  // audits this member runs by reducer (its own pick, and those it checks for accusers), which
  // members it showed its evidence to, and how long it stays for them.
  std::shared_ptr<const std::vector<float>> result;
  std::map<uint32_t, reducer_audit> audits;
  std::set<uint32_t> audited;         // reducers audited or being audited
  std::set<uint32_t> found_lying;     // reducers our audits found lying
  std::set<uint32_t> evidence_shown;  // members that received our evidence
  std::set<uint32_t> accusations_heard;  // members whose accusation we acted on
  std::set<uint32_t> accused;            // reducers others accused
  std::optional<uint32_t> own_pick;   // the reducer this member chose to audit
  std::mt19937_64 draw;               // private: whom and which pieces to audit
  clock_type::time_point audit_deadline;
  clock_type::time_point linger_deadline;
  averaging_metrics metrics{global_metrics()};
  static inline const char* name = "averaging_group";
};

using group_pointer = averaging_group_actor::stateful_pointer<group_state>;

std::string short_id(const std::string& id) {
  return id.substr(0, 8);
}

std::string member_name(const group_state& st, uint32_t member) {
  return member < st.assignment.members.size() ? short_id(st.assignment.members[member].peer_id)
                                               : "an unknown sender";
}

void reply(group_pointer self, average_outcome outcome) {
  auto& st = self->state;
  st.finished = true;
  outcome.round_id = st.assignment.round_id;
  outcome.seconds = std::chrono::duration<double>(clock_type::now() - st.started).count();
  outcome.bytes_sent = st.bytes_sent;
  outcome.bytes_received = st.bytes_received;
  outcome.restarts = st.round ? st.round->restarts() : 0;
  outcome.offenders.assign(st.offenders.begin(), st.offenders.end());
  self->send(st.options.reply_to, std::move(outcome));
}

void quit_reporting_link_rates(group_pointer self);

// A failed round still measured the link: what arrived before the deadline is a download
// sample, and after a first round on slow links timed out it sizes the next one's deadline.
void fail(group_pointer self, const char* metric_reason, const std::string& why,
          round_result result = round_result::failed) {
  auto& st = self->state;
  if (st.finished)
    return;
  spdlog::warn("round {:016x}: {}", st.assignment.round_id, why);
  st.metrics.round_failures.with({metric_reason}).inc();
  average_outcome outcome;
  outcome.values = st.options.values;
  outcome.result = result;
  outcome.detail = why;
  reply(self, std::move(outcome));
  quit_reporting_link_rates(self);
}

// A finished round tells the averager what it measured of this peer's link (a download sample:
// everything that arrived, from the round's start to the last chunk; an upload sample: the
// members' digests), then ends.
void report_link_rates(group_pointer self) {
  auto& st = self->state;
  if (!st.rates_reported && st.options.reply_to) {
    st.rates_reported = true;
    uint64_t bytes = 0;
    std::optional<clock_type::time_point> last;
    for (const auto& stream : st.received)
      if (stream.bytes > 0) {
        bytes += stream.bytes;
        last = last ? std::max(*last, stream.last) : stream.last;
      }
    const double seconds =
      last && *last > st.started ? std::chrono::duration<double>(*last - st.started).count() : 0.0;
    self->send(st.options.reply_to, link_rate_atom_v, static_cast<double>(bytes), seconds,
               static_cast<double>(st.upload_bytes), st.upload_rate);
  }
}

void quit_reporting_link_rates(group_pointer self) {
  report_link_rates(self);
  self->quit();
}

// Once done and every digest is in (or no longer awaited), the link rates go to the averager;
// the group ends when, besides, no audit runs and no auditor is left to serve.
void quit_once_digests_are_in(group_pointer self) {
  auto& st = self->state;
  if (!st.round || st.round->state() != butterfly_round::status::done)
    return;
  const auto now = clock_type::now();
  if (st.round->awaiting_digests() && now < st.digest_deadline)
    return;
  report_link_rates(self);
  if (st.audits.empty() && now >= st.linger_deadline)
    self->quit();
}

// Fault injection: give the network a moment to carry what was sent, then die like a crash.
[[noreturn]] void die_now(const char* role) {
  spdlog::warn("debug: killing this peer in the middle of an all-reduce (as {})", role);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  std::raise(SIGKILL);
  std::abort();
}

// Hands a coding job to the least busy compressor.
template <class Work>
void dispatch(group_pointer self, Work work) {
  auto& st = self->state;
  auto least = std::min_element(st.compressor_load.begin(), st.compressor_load.end());
  const auto index = static_cast<size_t>(least - st.compressor_load.begin());
  ++*least;
  st.job_compressor[work.tag] = index;
  self->send(st.options.compressors[index], std::move(work));
}

void start_audit(group_pointer self, uint32_t reducer);

void on_done(group_pointer self, round_done& done) {
  auto& st = self->state;
  const auto me = st.round->me();
  for (uint32_t m = 0; m < st.assignment.members.size(); ++m)
    if (m != me && ((((done.member_set >> m) & 1u) && done.group_size > 1) ||
                    ((done.left_out >> m) & 1u))) {
      const auto& from = st.received[m];
      self->send(st.assignment.members[m].group, digest_atom_v,
                 round_digest{st.assignment.round_id, done.member_set, me, done.digest,
                              from.bytes, from.rate(st.started)});
    }
  if (st.round->float_bytes() > 0)
    st.metrics.compression_ratio.set(static_cast<double>(st.bytes_sent) /
                                     static_cast<double>(st.round->float_bytes()));
  average_outcome outcome;
  outcome.values = std::move(done.values);
  outcome.group_size = static_cast<int32_t>(done.group_size);
  outcome.result = done.group_size > 1 ? round_result::averaged : round_result::alone;
  if (st.options.policy.error_feedback())
    outcome.residual = std::make_shared<const std::vector<float>>(std::move(done.residual));
  // This member audits and hears accusations: a proven lie may still discard the round.
  outcome.may_be_discarded =
    done.group_size > 1 && st.options.key && st.options.audit_probability > 0;
  auto result = outcome.values;
  reply(self, std::move(outcome));
  // Wait for the others' digests (bounded), so a mismatch is noticed and counted.
  const auto now = clock_type::now();
  st.digest_deadline = now + digest_wait;
  if (done.group_size > 1 && st.options.key) {
    // Stay to show auditors our evidence: as long as the round took, at least audit_window.
    const auto took = std::chrono::duration_cast<clock_type::duration>(now - st.started);
    st.linger_deadline = now + std::max<clock_type::duration>(audit_window, took);
    st.audit_deadline = now + std::max<clock_type::duration>(audit_window, 2 * took);
    auto& draw = st.draw;
    const auto reducers = st.round->reducers_of_last_attempt();
    // An auditor keeps the result while it stays, to check accusations too.
    if (st.options.audit_probability > 0)
      st.result = std::move(result);
    if (!reducers.empty() &&
        std::uniform_real_distribution<double>(0, 1)(draw) < st.options.audit_probability) {
      st.own_pick = reducers[std::uniform_int_distribution<size_t>(0, reducers.size() - 1)(draw)];
      start_audit(self, *st.own_pick);
    }
  }
}

// --- audits (runtime/allreduce/reducer_audit.hpp) -------------------------------------------

// Whether the message being handled comes from member `member`'s node.
bool from_member(group_pointer self, uint32_t member) {
  auto& st = self->state;
  auto sender = self->current_sender();
  return sender && member < st.assignment.members.size() &&
         sender->node() == st.assignment.members[member].group.node();
}

void tell_averager(group_pointer self, uint32_t member, const char* verdict,
                   const std::string& detail) {
  auto& st = self->state;
  self->state.metrics.audits.with({verdict}).inc();
  if (st.options.reply_to && std::string_view(verdict) != "passed")
    self->send(st.options.reply_to, audit_atom_v, st.assignment.round_id,
               st.assignment.members[member].peer_id, std::string(verdict), detail);
}

// Tells every other member of the attempt, the accused included: it checks the proof as well,
// so that honest members ban a forger alike (hear_accusation).
void accuse(group_pointer self, uint32_t reducer, std::vector<audit_evidence> proof) {
  auto& st = self->state;
  const auto me = st.round->me();
  for (uint32_t m = 0; m < st.assignment.members.size(); ++m)
    if (m != me && ((st.round->member_set() >> m) & 1u))
      self->send(st.assignment.members[m].group, audit_atom_v,
                 audit_accusation{st.assignment.round_id, reducer, me, proof});
}

void finish_audit(group_pointer self, uint32_t reducer, const audit_finding& finding,
                  bool answered) {
  auto& st = self->state;
  auto it = st.audits.find(reducer);
  if (it == st.audits.end())
    return;
  const bool own = st.own_pick == reducer;
  // A complete audit's inputs prove a lie to the other members; refused evidence cannot.
  auto proof = it->second.complete() ? it->second.evidence() : std::vector<audit_evidence>{};
  st.audits.erase(it);
  const auto round = st.assignment.round_id;
  if (finding.honest) {
    spdlog::debug("round {:016x}: audit of reducer {} passed", round, member_name(st, reducer));
    tell_averager(self, reducer, "passed", "");
    // An accuser claimed otherwise: counted, not punished (the reducer may have shown the two of
    // us different evidence).
    if (st.accused.count(reducer) != 0)
      st.metrics.audits.with({"unconfirmed"}).inc();
    if (own && st.options.accuse_falsely && !proof.empty() && !proof.front().blob.bytes.empty()) {
      // debug.byzantine = "false_accuser": an honest result accused with an altered input.
      auto& forged = proof.front().blob;
      forged.bytes[forged.bytes.size() / 2] ^= 1;
      seal(forged);
      accuse(self, reducer, std::move(proof));
    }
    return;
  }
  if (!answered) {
    spdlog::warn("round {:016x}: reducer {} did not show its evidence to this auditor in time "
                 "({})",
                 round, member_name(st, reducer), finding.detail);
    tell_averager(self, reducer, "unanswered", finding.detail);
    return;
  }
  spdlog::error("round {:016x}: audit: reducer {} lied about its part: {}", round,
                member_name(st, reducer), finding.detail);
  tell_averager(self, reducer, "lied", finding.detail);
  st.found_lying.insert(reducer);
  if (own)  // else it confirmed another's accusation, whose accuser told everyone
    accuse(self, reducer, std::move(proof));
}

void start_audit(group_pointer self, uint32_t reducer) {
  auto& st = self->state;
  if (!st.result || st.audited.count(reducer) != 0)
    return;
  auto plan = st.round->audit_plan_for(reducer, *st.result);
  if (!plan)
    return;
  auto sampled = sample_pieces(std::move(*plan), audited_pieces, st.draw());
  audit_request request{st.assignment.round_id, st.round->me(), st.round->member_set(), {}};
  for (const auto& piece : sampled.pieces)
    request.offsets.push_back(piece.begin);
  st.audited.insert(reducer);
  st.audits.emplace(reducer, reducer_audit(std::move(sampled)));
  self->send(st.assignment.members[reducer].group, audit_atom_v, std::move(request));
}

// A member audits our part: it gets every input we reduced, once.
void answer_audit(group_pointer self, const audit_request& request) {
  auto& st = self->state;
  // Any attempt the requester was in: it may have finished in one we restarted from.
  if (!st.round || request.round_id != st.assignment.round_id ||
      request.requester == st.round->me() || !((request.member_set >> request.requester) & 1u) ||
      request.offsets.size() > max_audited_pieces || !from_member(self, request.requester) ||
      !st.evidence_shown.insert(request.requester).second)
    return;
  auto to = caf::actor_cast<averaging_group_remote>(self->current_sender());
  for (const auto& evidence : st.round->audit_evidence_of_our_part(request.member_set))
    if (std::find(request.offsets.begin(), request.offsets.end(), evidence.blob.offset) !=
        request.offsets.end())
      self->send(to, audit_atom_v, evidence);
  st.metrics.audits.with({"answered"}).inc();
}

void take_evidence(group_pointer self, const audit_evidence& evidence) {
  auto& st = self->state;
  // Evidence counts only from the node of the reducer it is asked of.
  auto it = std::find_if(st.audits.begin(), st.audits.end(),
                         [&](const auto& entry) { return from_member(self, entry.first); });
  if (it == st.audits.end())
    return;
  const auto reducer = it->first;
  auto& audit = it->second;
  if (auto refused = audit.add(evidence))
    finish_audit(self, reducer, {false, "its evidence was refused: " + *refused}, true);
  else if (audit.complete())
    finish_audit(self, reducer, audit.verdict(), true);
  quit_once_digests_are_in(self);
}

// An accusation's proof, checked against the result this member applied (reducer_audit.hpp).
// Returns false where it cannot be checked here (no proof, or one of another attempt).
bool check_proof(group_pointer self, const audit_accusation& accusation) {
  auto& st = self->state;
  const auto& proof = accusation.proof;
  if (proof.empty() || proof.front().member_set != st.round->member_set())
    return false;
  auto plan = st.round->audit_plan_for(accusation.reducer, *st.result);
  if (!plan)
    return false;
  const auto round = st.assignment.round_id;
  const auto accuser = member_name(st, accusation.accuser);
  const auto reducer = member_name(st, accusation.reducer);
  auto finding = check_accusation_proof(std::move(*plan), proof);
  if (accusation.reducer == st.round->me() && finding.result == proof_finding::kind::confirmed) {
    // Against this peer, which sent what it reduced: a bug, not a lie to ban anyone for.
    spdlog::error("round {:016x}: member {}'s proof against this peer's part holds: {}", round,
                  accuser, finding.detail);
    return true;
  }
  switch (finding.result) {
    case proof_finding::kind::confirmed:
      spdlog::error("round {:016x}: member {}'s proof shows that reducer {} lied about its part: "
                    "{}",
                    round, accuser, reducer, finding.detail);
      st.audited.insert(accusation.reducer);
      if (st.found_lying.insert(accusation.reducer).second)
        tell_averager(self, accusation.reducer, "lied", "member " + accuser + "'s proof: " +
                                                          finding.detail);
      break;
    case proof_finding::kind::contradicted:
      spdlog::warn("round {:016x}: member {}'s proof against reducer {} does not hold here: the "
                   "inputs give the result this peer applied",
                   round, accuser, reducer);
      st.metrics.audits.with({"unconfirmed"}).inc();
      break;
    case proof_finding::kind::refused:
      spdlog::error("round {:016x}: member {} accused reducer {} with a forged proof: {}", round,
                    accuser, reducer, finding.detail);
      tell_averager(self, accusation.accuser, "forged_proof", finding.detail);
      break;
  }
  return true;
}

// Another member says a reducer lied: we check for ourselves, with its proof where it carries
// one of our attempt, else by auditing the reducer. The accused checks the proof too: a forged
// one gets its accuser banned by every honest member alike (members that disagree on whom they
// left out would follow different leaders and split).
void hear_accusation(group_pointer self, const audit_accusation& accusation) {
  auto& st = self->state;
  if (!st.round || st.round->state() != butterfly_round::status::done ||
      accusation.round_id != st.assignment.round_id || accusation.accuser == st.round->me() ||
      accusation.reducer >= st.assignment.members.size() ||
      !from_member(self, accusation.accuser) ||
      !st.accusations_heard.insert(accusation.accuser).second)
    return;
  spdlog::warn("round {:016x}: member {} says reducer {} lied; checking", st.assignment.round_id,
               member_name(st, accusation.accuser), member_name(st, accusation.reducer));
  if (!st.result)
    return;  // this peer does not audit (averaging.audit_probability = 0)
  if (check_proof(self, accusation) || accusation.reducer == st.round->me())
    return;
  st.accused.insert(accusation.reducer);
  if (st.audited.count(accusation.reducer) != 0) {
    // Audited already: a pass contradicts the accuser (a running audit counts at its end).
    if (st.found_lying.count(accusation.reducer) == 0 && st.audits.count(accusation.reducer) == 0)
      st.metrics.audits.with({"unconfirmed"}).inc();
    return;
  }
  start_audit(self, accusation.reducer);
}

// Carries out what the round asks for.
void act(group_pointer self, std::vector<round_action> actions) {
  auto& st = self->state;
  using fault = averaging_group_options::fault;
  for (auto& action : actions) {
    if (st.finished && !std::holds_alternative<round_send>(action))
      continue;  // after a failure nothing more; after done only the last sends
    if (auto* encode = std::get_if<round_encode>(&action)) {
      if (encode->role == chunk_role::gather_out && st.options.inject == fault::die_as_reducer)
        die_now("reducer");
      if (encode->role == chunk_role::gather_out && st.options.lie_as_reducer)
        for (auto& v : encode->job.own_values())
          v = -v;
      if (encode->role == chunk_role::scatter_out && st.options.scale_chunks != 0)
        for (auto& v : encode->job.own_values())
          v *= st.options.scale_chunks;
      if (encode->role == chunk_role::scatter_out && st.options.corrupt_chunks) {
        auto& values = encode->job.own_values();
        values.assign(values.size(), std::numeric_limits<float>::quiet_NaN());
        encode->job.codec = {};
        encode->job.error_feedback = false;
      }
      dispatch(self, compressor_encode{encode->tag, std::move(encode->job)});
    } else if (auto* decode = std::get_if<round_decode>(&action)) {
      dispatch(self, compressor_decode{decode->tag, std::move(decode->job)});
    } else if (auto* send = std::get_if<round_send>(&action)) {
      if (send->chunk.phase == static_cast<uint8_t>(allreduce_phase::scatter)) {
        if (st.options.inject == fault::die_as_sender &&
            2 * st.scatter_chunks_sent >= st.round->scatter_chunks())
          die_now("sender");
        ++st.scatter_chunks_sent;
      }
      st.bytes_sent += send->chunk.blob.bytes.size();
      st.metrics.bytes_sent.inc(send->chunk.blob.bytes.size());
      self->send(st.assignment.members[send->to].group, chunk_atom_v, std::move(send->chunk));
    } else if (auto* restart = std::get_if<round_restart>(&action)) {
      st.metrics.restarts.inc();
      spdlog::warn("round {:016x}: restarting with {} of {} members ({})",
                   st.assignment.round_id, std::popcount(restart->member_set),
                   st.assignment.members.size(), restart->why);
    } else if (auto* rejected = std::get_if<round_reject>(&action)) {
      st.metrics.rejected_chunks.with({rejected->reason}).inc();
      // Invalid data is no accident of timing (wrong parts and duplicates can be): its sender
      // is reported to the averager.
      if (rejected->reason == "invalid" && rejected->sender < st.assignment.members.size())
        st.offenders.insert(st.assignment.members[rejected->sender].peer_id);
      spdlog::warn("round {:016x}: rejected a chunk from {}: {}", st.assignment.round_id,
                   member_name(st, rejected->sender), rejected->detail);
    } else if (auto* clipped = std::get_if<round_weight_clipped>(&action)) {
      st.metrics.clipped_weights.inc();
      spdlog::warn("round {:016x}: member {} claims weight {:.0f}, more than {} x the group's "
                   "median; it counts as {:.0f}",
                   st.assignment.round_id, member_name(st, clipped->member), clipped->claimed,
                   st.options.max_weight_ratio, clipped->used);
    } else if (auto* done = std::get_if<round_done>(&action)) {
      on_done(self, *done);
    } else if (auto* failure = std::get_if<round_failure>(&action)) {
      if (failure->why == round_failure::cause::excluded)
        fail(self, "excluded", failure->detail, round_result::missed);
      else
        fail(self,
             failure->why == round_failure::cause::deadline ? "deadline" : "invalid_assignment",
             failure->detail);
      return;
    }
  }
  quit_once_digests_are_in(self);
}

// A chunk from a member proves it alive as well as a heartbeat does. On a slow link its
// heartbeats queue behind megabytes of chunks on the same connection, and busy peers looked
// silent long enough to be suspected and dropped from the round.
void note_alive(group_pointer self, uint32_t member) {
  auto& st = self->state;
  const auto& m = st.assignment.members[member];
  auto sender = self->current_sender();
  if (!st.options.membership || !sender || sender->node() != m.group.node())
    return;
  auto now = clock_type::now();
  if (now - st.last_alive_note[member] < alive_note_interval)
    return;
  st.last_alive_note[member] = now;
  self->send(st.options.membership, alive_atom_v, m.peer_id);
}

void handle_chunk(group_pointer self, allreduce_chunk& chunk) {
  auto& st = self->state;
  if (!st.round) {
    if (st.early_chunks.size() < max_early_chunks)
      st.early_chunks.push_back(std::move(chunk));
    return;
  }
  if (st.round->state() != butterfly_round::status::running)
    return;
  st.bytes_received += chunk.blob.bytes.size();
  st.metrics.bytes_received.inc(chunk.blob.bytes.size());
  if (chunk.round_id == st.assignment.round_id && chunk.sender < st.assignment.members.size() &&
      chunk.sender != st.round->me()) {
    auto& stream = st.received[chunk.sender];
    stream.last = clock_type::now();
    stream.bytes += chunk.blob.bytes.size();
    if ((st.round->member_set() >> chunk.sender) & 1u)
      note_alive(self, chunk.sender);
  }
  act(self, st.round->chunk_arrived(std::move(chunk)));
}

void start_round(group_pointer self, group_assignment assignment) {
  auto& st = self->state;
  if (st.round || st.finished)
    return;
  const auto n = assignment.members.size();
  auto mine = std::find_if(assignment.members.begin(), assignment.members.end(),
                           [&](const group_member& m) {
                             return m.group.address() == self->address();
                           });
  if (n == 0 || n > 64 || mine == assignment.members.end() ||
      assignment.length != st.options.values->size()) {
    fail(self, "invalid_assignment", "assignment does not fit this peer");
    return;
  }
  if (std::any_of(assignment.members.begin(), assignment.members.end(),
                  [](const group_member& m) { return !m.group; })) {
    fail(self, "invalid_assignment", "assignment has a member without an actor");
    return;
  }
  st.assignment = std::move(assignment);
  round_setup setup;
  setup.round_id = st.assignment.round_id;
  setup.me = static_cast<uint32_t>(mine - st.assignment.members.begin());
  for (const auto& m : st.assignment.members)
    setup.members.push_back({m.weight, m.part_share, short_id(m.peer_id), m.peer_id});
  setup.signer = st.options.key;
  setup.check_signatures = st.options.check_signatures;
  setup.keep_evidence = st.options.key != nullptr;
  setup.values = st.options.values;
  setup.output_buffers = st.options.output_buffers;
  setup.chunk_elements = st.options.chunk_elements;
  setup.max_weight_ratio = st.options.max_weight_ratio;
  setup.aggregation = st.options.aggregation;
  setup.policy = st.options.policy;
  setup.residual = std::move(st.options.residual);
  st.round.emplace(std::move(setup));
  st.started = clock_type::now();
  st.round_timeout = accepted_round_deadline(
    std::chrono::milliseconds(static_cast<int64_t>(
      std::min<uint64_t>(st.assignment.deadline_ms, uint64_t{1} << 40))),
    st.options.timeout);
  st.deadline = st.started + st.round_timeout;
  st.last_alive_note.assign(n, clock_type::time_point{});
  st.received.assign(n, received_stream{});
  for (const auto& m : st.assignment.members)
    if (m.group.address() != self->address())
      self->monitor(m.group);
  self->send(self, tick_atom_v);
  act(self, st.round->start());
  auto early = std::move(st.early_chunks);
  for (auto& chunk : early)
    handle_chunk(self, chunk);
}

averaging_group_actor::behavior_type averaging_group(group_pointer self,
                                                     averaging_group_options options) {
  auto& st = self->state;
  st.options = std::move(options);
  st.draw.seed(st.options.audit_seed);
  st.compressor_load.assign(st.options.compressors.size(), 0);
  // A group whose averager is gone has no one to report to, and may wait for an assignment
  // that never comes (the peer stopped while its join was pending): it ends too, or it would
  // hold the actor system open at exit.
  if (st.options.reply_to)
    self->monitor(st.options.reply_to);
  self->set_down_handler([=](const caf::down_msg& dm) {
    auto& st = self->state;
    if (st.options.reply_to && dm.source == st.options.reply_to.address()) {
      self->quit(dm.reason);
      return;
    }
    if (!st.round)
      return;
    for (uint32_t m = 0; m < st.assignment.members.size(); ++m)
      if (st.assignment.members[m].group.address() == dm.source)
        act(self, st.round->member_gone(m, dm.reason == caf::exit_reason::normal));
  });
  return {
    // From this peer's averager (the leader's answer to its join), never from the leader.
    [=](group_assignment& assignment) {
      if (!refuse_remote(self, "averaging_group", "assignment"))
        start_round(self, std::move(assignment));
    },
    [=](chunk_atom, allreduce_chunk& chunk) { handle_chunk(self, chunk); },
    [=](audit_atom, const audit_request& request) { answer_audit(self, request); },
    [=](audit_atom, const audit_evidence& evidence) { take_evidence(self, evidence); },
    [=](audit_atom, const audit_accusation& accusation) { hear_accusation(self, accusation); },
    [=](compressor_result& result) {
      auto& st = self->state;
      if (refuse_remote(self, "averaging_group", "coded chunk"))
        return;
      auto it = st.job_compressor.find(result.tag);
      if (it == st.job_compressor.end() || !st.round)
        return;
      --st.compressor_load[it->second];
      st.job_compressor.erase(it);
      act(self, st.round->chunk_coded(result.tag, std::move(result.chunk)));
    },
    [=](digest_atom, const round_digest& d) {
      auto& st = self->state;
      if (!st.round || d.round_id != st.assignment.round_id)
        return;
      for (auto& action : st.round->digest_arrived(d.sender, d.member_set, d.digest)) {
        const auto* checked = std::get_if<round_digest_checked>(&action);
        if (checked == nullptr) {
          act(self, {std::move(action)});  // left out: the round ends as missed
          return;
        }
        // Our streams to the members share our uplink: their rates add up. A member's word on
        // our upload only steers our part's size, so an absurd one is merely ignored.
        if (std::isfinite(d.received_rate) && d.received_rate > 0 &&
            d.received_rate < max_plausible_rate) {
          st.upload_bytes += d.received_bytes;
          st.upload_rate += d.received_rate;
        }
        if (checked->left_us_out) {
          st.metrics.digest_mismatches.inc();
          spdlog::warn("round {:016x}: member {} finished without this peer after this peer's "
                       "round had ended; the swarm's state agreement will repair it",
                       st.assignment.round_id, member_name(st, d.sender));
        } else if (!checked->matches) {
          st.metrics.digest_mismatches.inc();
          spdlog::error("round {:016x}: member {} ended with a different result (digest {:016x})",
                        st.assignment.round_id, member_name(st, d.sender), d.digest);
        }
      }
      quit_once_digests_are_in(self);
    },
    [=](tick_atom) {
      auto& st = self->state;
      if (refuse_remote(self, "averaging_group", "tick"))
        return;
      const auto now = clock_type::now();
      const bool done = st.round && st.round->state() == butterfly_round::status::done;
      if (!done && now >= st.deadline) {
        if (st.round)
          st.round->deadline_passed();  // the round's own failure action is replaced by ours
        fail(self, "deadline",
             fmt::format("all-reduce did not finish within {:.1f} s (the deadline derived from "
                         "its size and its members' link rates; allreduce_timeout {:.0f} s)",
                         std::chrono::duration<double>(st.round_timeout).count(),
                         std::chrono::duration<double>(st.options.timeout).count()));
        return;
      }
      if (!done) {
        self->delayed_send(self, tick_towards(st.deadline, now), tick_atom_v);
        return;
      }
      if (now >= st.audit_deadline) {
        // Reducers that did not show all their evidence in time.
        std::vector<std::pair<uint32_t, std::string>> late;
        for (const auto& [reducer, audit] : st.audits)
          late.emplace_back(reducer, fmt::format("{} of {} inputs arrived", audit.received(),
                                                 audit.expected()));
        for (const auto& [reducer, detail] : late)
          finish_audit(self, reducer, {false, detail}, false);
      }
      quit_once_digests_are_in(self);  // ends the group once nothing is left to wait for
      auto next = st.linger_deadline;
      if (st.round->awaiting_digests())
        next = std::max(next, st.digest_deadline);
      if (!st.audits.empty())
        next = std::max(next, st.audit_deadline);
      self->delayed_send(self, tick_towards(std::max(next, now), now), tick_atom_v);
    },
  };
}

} // namespace

averaging_group_actor spawn_averaging_group(caf::actor_system& system,
                                             averaging_group_options options) {
  if (options.compressors.empty())
    throw std::invalid_argument("an averaging group needs at least one compressor");
  return system.spawn<caf::detached>(averaging_group, std::move(options));
}

} // namespace ddactor
