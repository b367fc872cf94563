// Fuzz target for the CAF messages a peer accepts from other nodes (runtime/swarm_messages.hpp):
// whatever bytes arrive, CAF's binary_deserializer (what the middleman decodes messages with)
// either fails or yields a value, never allocating much more than the bytes given, and then the
// receiver's own check of that type either refuses it or accepts something that keeps the limits
// the check promises. The first input byte picks the type, the rest is its encoding:
//    0 peer_info          validate_peer_info
//    1 peer_info list     validate_peer_list (gossip, hello replies)
//    2 swarm_member       validate_peer_info, handles_live_on, hello_proven (membership's hello)
//    3 progress_report    believable_report, progress_tracker::on_report, claimed_link_rate,
//                         report_proven
//    4 round_request      acceptable_round_request, then matchmaking_leader::on_join
//    5 group_assignment   assignment_proven, butterfly_round::start on it (group_member inside)
//                         as a group would, accepted_round_deadline
//    6 tensor_blob        validate_blob (as received, and re-sealed), float32_values
//    7 allreduce_chunk    butterfly_round::chunk_arrived of a running round, run_chunk_job on the
//                         decode job it asks for, chunk_coded
//    8 round_digest       butterfly_round::digest_arrived of a finished round and of a running
//                         one
//    9 state_manifest     validate_state_manifest
//   10 state_chunk        validate_state_chunk (as received, and with its checksum set right),
//                         state_assembly::accept
//   11 velocity_request   validate_blob of x and t with the expert's expectations (the rest of
//                         its check needs the model: actors/expert_server.cpp)
//   12 generate_request   decoding only (its check needs the model: actors/generator.cpp)
//   13 audit_request      decoding only (its check is the sender's node: averaging_group.cpp)
//   14 audit_evidence     reducer_audit::add against the plan of a finished, signed round
//   15 audit_accusation   check_accusation_proof against the plan of a finished, signed, honest
//                         round (its sender's node is checked in averaging_group.cpp)
// Actor handles decode through a proxy registry whose proxies swallow every message, so a handle
// of another node becomes a live, inert handle, as the middleman would make (the middleman's own
// proxies, their links and monitors are not covered). Remote handles stay within one input.
//
// Built with a plain main() (fuzz_driver_main.cpp) for CI, or under libFuzzer with clang. The
// plain build also takes `--write-seeds DIR`: the seed corpus (corpus/wire), made from sample
// values with caf::binary_serializer, plus hostile variants. Violations abort via
// __builtin_trap.
#include "caf/all.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>
#include <new>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "runtime/actor_system_setup.hpp"
#include "runtime/allreduce/butterfly_round.hpp"
#include "runtime/allreduce/chunk_coding.hpp"
#include "runtime/allreduce/reducer_audit.hpp"
#include "runtime/allreduce/round_deadline.hpp"
#include "runtime/matchmaking_leader.hpp"
#include "runtime/peer_address.hpp"
#include "runtime/peer_identity.hpp"
#include "runtime/progress_tracker.hpp"
#include "runtime/secure/assignment_proof.hpp"
#include "runtime/secure/hello_proof.hpp"
#include "runtime/secure/peer_key.hpp"
#include "runtime/secure/report_proof.hpp"
#include "runtime/state_transfer.hpp"
#include "runtime/swarm_messages.hpp"
#include "runtime/swarm_view.hpp"
#include "runtime/tensor_blob.hpp"

// The largest single allocation allowed while the current thread decodes (the rest of the time:
// no limit). Not under AddressSanitizer, which keeps its own operator new; there libFuzzer's
// -malloc_limit_mb catches a huge allocation.
namespace {
thread_local std::size_t allocation_limit = std::numeric_limits<std::size_t>::max();
}

#if defined(__SANITIZE_ADDRESS__)
#define DDACTOR_WIRE_FUZZ_ALLOCATION_PROBE 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define DDACTOR_WIRE_FUZZ_ALLOCATION_PROBE 0
#endif
#endif
#ifndef DDACTOR_WIRE_FUZZ_ALLOCATION_PROBE
#define DDACTOR_WIRE_FUZZ_ALLOCATION_PROBE 1
#endif

#if DDACTOR_WIRE_FUZZ_ALLOCATION_PROBE
// GCC sees free() meet operator new once these are inlined; they are the pair that belongs
// together.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
void* operator new(std::size_t size) {
  // Trapped before the allocation: a decoder that trusts a claimed length would take gigabytes.
  if (size > allocation_limit)
    __builtin_trap();
  if (void* p = std::malloc(size == 0 ? 1 : size))
    return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
#pragma GCC diagnostic pop
#endif

namespace {

using namespace ddactor;

void check(bool condition) {
  if (!condition)
    __builtin_trap();
}

bool finite_values(std::span<const float> values) {
  return std::all_of(values.begin(), values.end(), [](float v) { return std::isfinite(v); });
}

// --- what decoding actor handles needs -------------------------------------------------------

// A handle of another node, as the middleman's proxies are, but swallowing every message.
class inert_proxy final : public caf::actor_proxy {
 public:
  explicit inert_proxy(caf::actor_config& config) : caf::actor_proxy(config) {}
  void enqueue(caf::mailbox_element_ptr, caf::execution_unit*) override {}
  bool add_backlink(caf::abstract_actor*) override { return false; }
  bool remove_backlink(caf::abstract_actor*) override { return false; }
  void kill_proxy(caf::execution_unit* context, caf::error reason) override {
    cleanup(std::move(reason), context);
  }
};

// One actor system for the process (node ids and proxies need one), without network, with one
// scheduler thread: no actor runs in it.
struct fuzz_actor_system {
  ddactor_system_config config{network_timing{}, false};
  caf::actor_system system{config.set("scheduler.max-threads", 1)};
};

caf::actor_system& fuzz_system() {
  // Never destroyed: CAF 0.17's actor_system crashed in its destructor when exit() tore it down.
  static auto* made = new fuzz_actor_system;
  return made->system;
}

// The execution unit a deserializer runs in: its proxy registry makes an inert proxy for every
// remote handle decoded, and kills them when the unit goes (at the end of an input).
class decoding_unit final : private caf::proxy_registry::backend {
 public:
  decoding_unit() : proxies_(fuzz_system(), *this), unit_(&fuzz_system()) {
    unit_.proxy_registry_ptr(&proxies_);
  }
  caf::execution_unit* get() { return &unit_; }
  caf::strong_actor_ptr proxy(const caf::node_id& node, caf::actor_id id) {
    return proxies_.get_or_put(node, id);
  }

 private:
  caf::strong_actor_ptr make_proxy(caf::node_id node, caf::actor_id id) override {
    caf::actor_config config;
    return caf::make_actor<inert_proxy, caf::strong_actor_ptr>(id, std::move(node),
                                                               &fuzz_system(), config);
  }
  void set_last_hop(caf::node_id*) override {}

  caf::proxy_registry proxies_;
  caf::scoped_execution_unit unit_;
};

// Decodes `value` from `bytes` as the middleman would. Decoding may allocate up to this
// many times the input (a list of empty strings: 32 bytes of std::string, twice for the vector's
// growth, per input byte), plus room for proxies and errors; CAF itself bounds nothing.
constexpr std::size_t allocation_factor = 64;
constexpr std::size_t allocation_slack = 64 * 1024;

template <class T>
bool decode(std::span<const std::uint8_t> bytes, decoding_unit& unit, T& value) {
  caf::binary_deserializer source{unit.get(), reinterpret_cast<const char*>(bytes.data()),
                                  bytes.size()};
  allocation_limit = allocation_factor * bytes.size() + allocation_slack;
  const caf::error error = source(value);
  allocation_limit = std::numeric_limits<std::size_t>::max();
  return !error;
}

// --- the fixed context the checks run in -----------------------------------------------------

constexpr const char* fuzz_swarm = "expert-3";
constexpr uint64_t chunk_round_id = 0x5eed0001;
constexpr uint64_t digest_round_id = 0x5eed0002;
constexpr std::size_t chunk_round_length = 12;  // three parts of 4 values

// The state the state_chunk checks ask chunks of: 100 bytes in chunks of 40.
const std::vector<char>& fuzz_state() {
  static const std::vector<char> bytes = [] {
    std::vector<char> made(100);
    for (std::size_t i = 0; i < made.size(); ++i)
      made[i] = static_cast<char>(i * 7 + 3);
    return made;
  }();
  return bytes;
}

const state_manifest& fuzz_manifest() {
  static const state_manifest manifest = make_state_manifest(fuzz_state(), 5, fuzz_swarm, 40);
  return manifest;
}

// A round of three equal members, we the first, with 12 values, started.
butterfly_round running_round() {
  round_setup setup;
  setup.round_id = chunk_round_id;
  setup.members = {{1, 1, "a", {}}, {1, 1, "b", {}}, {1, 1, "c", {}}};
  setup.me = 0;
  setup.values = std::make_shared<const std::vector<float>>(chunk_round_length, 1.0f);
  setup.chunk_elements = 4;
  butterfly_round round(std::move(setup));
  round.start();
  return round;
}

// Runs `rounds` (one per member, not started) to their end in-process, passing every message and
// coding job between them; returns what each member's round_done held (null: none).
std::vector<std::optional<round_done>> run_to_end(
  std::vector<std::unique_ptr<butterfly_round>>& rounds) {
  std::deque<std::pair<uint32_t, round_action>> queue;
  std::vector<std::optional<round_done>> done(rounds.size());
  auto push = [&](uint32_t member, std::vector<round_action> actions) {
    for (auto& action : actions)
      queue.emplace_back(member, std::move(action));
  };
  for (uint32_t m = 0; m < rounds.size(); ++m)
    push(m, rounds[m]->start());
  while (!queue.empty()) {
    auto [member, action] = std::move(queue.front());
    queue.pop_front();
    auto& round = *rounds[member];
    if (auto* encode = std::get_if<round_encode>(&action))
      push(member, round.chunk_coded(encode->tag, run_chunk_job(std::move(encode->job))));
    else if (auto* job = std::get_if<round_decode>(&action))
      push(member, round.chunk_coded(job->tag, run_chunk_job(std::move(job->job))));
    else if (auto* send = std::get_if<round_send>(&action))
      push(send->to, rounds[send->to]->chunk_arrived(std::move(send->chunk)));
    else if (auto* finished = std::get_if<round_done>(&action))
      done[member] = std::move(*finished);
  }
  return done;
}

// Two members average four values each to the end of their round; returns the first one, done,
// and its digest.
std::pair<std::unique_ptr<butterfly_round>, uint64_t> finished_round() {
  std::vector<std::unique_ptr<butterfly_round>> rounds;
  for (uint32_t me = 0; me < 2; ++me) {
    round_setup setup;
    setup.round_id = digest_round_id;
    setup.members = {{1, 1, "a", {}}, {1, 1, "b", {}}};
    setup.me = me;
    setup.values = std::make_shared<const std::vector<float>>(4, static_cast<float>(me + 1));
    setup.chunk_elements = 4;
    rounds.push_back(std::make_unique<butterfly_round>(std::move(setup)));
  }
  const auto done = run_to_end(rounds);
  check(rounds[0]->state() == butterfly_round::status::done && done[0].has_value());
  return {std::move(rounds[0]), done[0]->digest};
}

// Three members with keys sign, reduce and keep their evidence to the end of a round; returns
// the first member's plan for auditing member 1 and member 1's evidence.
std::pair<audit_plan, std::vector<audit_evidence>> audited_round() {
  std::vector<std::shared_ptr<const peer_key>> keys;
  std::vector<std::unique_ptr<butterfly_round>> rounds;
  for (uint32_t m = 0; m < 3; ++m) {
    std::array<uint8_t, 32> seed{};
    seed[0] = static_cast<uint8_t>(m + 1);
    keys.push_back(std::make_shared<const peer_key>(peer_key::from_seed(seed)));
  }
  for (uint32_t me = 0; me < 3; ++me) {
    round_setup setup;
    setup.round_id = digest_round_id;
    for (uint32_t m = 0; m < 3; ++m)
      setup.members.push_back({1, 1, {}, peer_id_of(keys[m]->public_part())});
    setup.me = me;
    setup.values = std::make_shared<const std::vector<float>>(6, static_cast<float>(me + 1));
    setup.chunk_elements = 1;
    setup.signer = keys[me];
    setup.check_signatures = true;
    setup.keep_evidence = true;
    rounds.push_back(std::make_unique<butterfly_round>(std::move(setup)));
  }
  const auto done = run_to_end(rounds);
  check(done[0].has_value());
  auto plan = rounds[0]->audit_plan_for(1, *done[0]->values);
  check(plan.has_value());
  const auto member_set = plan->member_set;
  return {std::move(*plan), rounds[1]->audit_evidence_of_our_part(member_set)};
}

// --- one check per wire type -----------------------------------------------------------------

void check_peer_info(const peer_info& info) {
  if (validate_peer_info(info))
    return;
  check(is_valid_peer_id(info.peer_id));
  check(!info.host.empty() && info.host.size() <= max_host_length && info.port != 0);
  check(info.swarm_id.size() <= max_swarm_id_length);
  check(info.relays.size() <= max_relays_per_peer);
  check(info.alternates.size() <= max_alternate_addresses);
  // Whatever it accepts, the dialer can read: its own address, alternates and relays.
  for (const auto& address : info.addresses())
    check(parse_peer_address(address).has_value());
  for (const auto& relay : info.relays)
    check(parse_peer_address(relay).has_value());
}

void check_peer_list(const std::vector<peer_info>& peers) {
  if (validate_peer_list(peers))
    return;
  check(peers.size() <= max_known_peers);
  for (const auto& info : peers)
    check(!validate_peer_info(info));
}

void check_swarm_member(const swarm_member& member) {
  check_peer_info(member.info);
  // A hello comes from the node of the membership handle it carries, if any.
  const caf::node_id sender = member.membership ? member.membership.node() : caf::node_id{};
  if (handles_live_on(member, sender))
    for (const auto& handle : {caf::actor_cast<caf::actor>(member.progress),
                               caf::actor_cast<caf::actor>(member.averager),
                               caf::actor_cast<caf::actor>(member.state_server)})
      check(!handle || handle.node() == sender);
  if (hello_proven(member, caf::to_string(sender))) {
    check(member.public_key.size() == 32 && member.signature.size() == 64);
    check(is_valid_peer_id(member.info.peer_id));
  }
}

void check_progress_report(const progress_report& report) {
  const bool believable = believable_report(report);
  if (believable)
    check(report.peer_id.size() == 32 && report.epoch >= 0 && report.samples >= 0 &&
          report.samples <= int64_t{1} << 40 && std::isfinite(report.samples_per_second) &&
          report.samples_per_second >= 0 && report.samples_per_second <= 1e9);
  const double rate = claimed_link_rate(report);
  check(std::isfinite(rate) && rate >= 0 && rate < 125e9);
  // The tracker of a peer of the report's swarm, as the progress actor feeds it.
  const std::string own_id(32, 'f');
  progress_tracker tracker({own_id, report.swarm_id});
  const auto now = progress_tracker::clock::now();
  check(tracker.on_report(report, now).has_value() == (believable && report.peer_id != own_id));
  const auto estimate = tracker.estimate(now);
  check(std::isfinite(estimate.samples_per_second) && std::isfinite(estimate.epoch_samples));
  tracker.update(now);
  if (report_proven(report))
    check(report.public_key.size() == 32 && report.signature.size() == 64 &&
          is_valid_peer_id(report.peer_id));
}

void check_round_request(const round_request& request) {
  if (!acceptable_round_request(request, fuzz_swarm))
    return;
  check(request.peer_id.size() == 32 && request.swarm_id == fuzz_swarm && request.epoch >= 0);
  check(std::isfinite(request.weight) && request.weight > 0 && request.length > 0);
  check(request.group && std::isfinite(request.link_rate) && request.link_rate >= 0);
  // As the averager hands it to its leader, which leads the epoch with this peer in it.
  const std::string own_id(32, '0');
  epoch_reports reports;
  reports.epochs[own_id] = request.epoch;
  reports.epochs[request.peer_id] = request.epoch;
  std::vector<std::string> members{own_id, request.peer_id};
  std::sort(members.begin(), members.end());
  matchmaking_leader leader(own_id, 4);
  const auto answer = leader.on_join({request.peer_id, request.epoch, request.weight,
                                      request.length, request.link_rate, 1, request.reachable},
                                     {reports, members});
  for (const auto& group : answer.formed)
    check(group.shares.size() == group.members.size());
}

void check_group_assignment(const group_assignment& assignment) {
  // Where proofs are required, a member takes only what the leader it joined signed.
  if (assignment_proven(assignment, assignment.leader_id))
    check(is_valid_peer_id(assignment.leader_id) && assignment.public_key.size() == 32 &&
          assignment.signature.size() == 64);
  const auto deadline = accepted_round_deadline(
    std::chrono::milliseconds(static_cast<int64_t>(
      std::min<uint64_t>(assignment.deadline_ms, uint64_t{1} << 40))),
    std::chrono::seconds(10));
  check(deadline >= std::chrono::seconds(10) &&
        deadline <= max_round_deadline_stretch * std::chrono::seconds(10));
  // The group actor refuses a length other than its own; any length up to this one is some
  // peer's.
  if (assignment.length == 0 || assignment.length > 4096 || assignment.members.empty())
    return;
  round_setup setup;
  setup.round_id = assignment.round_id;
  for (const auto& member : assignment.members)
    setup.members.push_back(
      {member.weight, member.part_share, short_peer_id(member.peer_id), member.peer_id});
  setup.me = 0;
  setup.values = std::make_shared<const std::vector<float>>(assignment.length, 1.0f);
  setup.chunk_elements = 64;
  butterfly_round round(std::move(setup));
  round.start();
  if (round.state() != butterfly_round::status::running)
    return;
  check(assignment.members.size() <= 64);
  for (const auto& member : assignment.members)
    check(std::isfinite(member.weight) && member.weight > 0);
}

// A blob that validate_blob accepts keeps its limits, and a float32 one reads as its shape says.
void check_blob_against(const tensor_blob& blob, const blob_expectations& expected) {
  for (const bool reseal : {false, true}) {
    tensor_blob copy = blob;
    if (reseal)
      seal(copy);
    if (validate_blob(copy, expected))
      continue;
    const auto elements = shape_elements(copy.shape, expected.max_elements);
    check(elements.has_value() && copy.shape.size() <= expected.max_rank);
    check(copy.bytes.size() <= expected.max_bytes);
    if (copy.codec != blob_codec_none)
      continue;
    check(copy.bytes.size() == *elements * dtype_size(copy.dtype).value_or(0));
    if (copy.dtype != static_cast<uint8_t>(blob_dtype::float32))
      continue;
    try {
      check(float32_values(copy).size() == *elements);
    } catch (const blob_error&) {
      check(false);
    }
  }
}

void check_tensor_blob(const tensor_blob& blob) { check_blob_against(blob, blob_expectations{}); }

void check_allreduce_chunk(const allreduce_chunk& chunk) {
  for (const bool reseal : {false, true}) {
    allreduce_chunk copy = chunk;
    if (reseal)
      seal(copy.blob);
    auto round = running_round();
    for (auto& action : round.chunk_arrived(copy)) {
      auto* job = std::get_if<round_decode>(&action);
      if (job == nullptr)
        continue;
      // Only a chunk of this round from another member, for a part it may send, gets decoded.
      check(copy.round_id == chunk_round_id && copy.sender >= 1 && copy.sender <= 2);
      check(copy.phase <= 1 && job->job.round_id == chunk_round_id);
      check(job->job.part_length <= chunk_round_length);
      auto coded = run_chunk_job(job->job);
      if (coded.error.empty()) {
        check(copy.blob.offset <= job->job.part_length);
        check(coded.values.size() <= job->job.part_length - copy.blob.offset);
        check(finite_values(coded.values));
      }
      round.chunk_coded(job->tag, std::move(coded));
    }
  }
}

void check_round_digest(const round_digest& digest) {
  // Once done: the other member's digest is compared once, anything else is ignored.
  auto [round, ours] = finished_round();
  const auto first = round->digest_arrived(digest.sender, digest.member_set, digest.digest);
  if (digest.sender != 1) {
    check(first.empty());
  } else {
    const auto* compared = first.size() == 1 ? std::get_if<round_digest_checked>(&first[0])
                                             : nullptr;
    check(compared != nullptr && compared->sender == 1);
    check(compared->matches == (digest.member_set == 0b11 && digest.digest == ours));
    check(compared->left_us_out == ((digest.member_set & 1) == 0));
    check(round->digest_arrived(digest.sender, digest.member_set, digest.digest).empty());
  }
  // While running: only a member of the group, within the set it names, may tell us that the
  // others went on without us.
  auto running = running_round();
  for (const auto& action : running.digest_arrived(digest.sender, digest.member_set,
                                                   digest.digest)) {
    const auto* failure = std::get_if<round_failure>(&action);
    check(failure != nullptr && failure->why == round_failure::cause::excluded);
    check(digest.sender >= 1 && digest.sender <= 2 && digest.member_set < 0b1000);
    check((digest.member_set & 1) == 0 && ((digest.member_set >> digest.sender) & 1) != 0);
  }
}

// Evidence is accepted only for a slot of the audited part, signed by that slot's sender, whole
// and decodable; accepted evidence completes the audit only together with the rest.
void check_audit_evidence(const audit_evidence& evidence) {
  static const auto audited = audited_round();
  const auto& plan = audited.first;
  reducer_audit audit(plan);
  if (audit.add(evidence))
    return;
  check(evidence.round_id == plan.round_id && evidence.member_set == plan.member_set);
  const auto at = std::find(plan.senders.begin(), plan.senders.end(), evidence.sender);
  check(at != plan.senders.end());
  check(chunk_signed_by(evidence.proof, plan.sender_ids[static_cast<size_t>(
                                          at - plan.senders.begin())],
                        plan.round_id, plan.member_set, evidence.sender, evidence.blob));
  check(audit.received() == 1 && !audit.complete() && !audit.verdict().honest);
  // The same evidence again is refused.
  check(audit.add(evidence).has_value());
}

// Every input of a proof must be signed by its sender, so no proof, however made, can show that
// the honest reducer of a finished round lied.
void check_audit_accusation(const audit_accusation& accusation) {
  static const auto audited = audited_round();
  const auto finding = check_accusation_proof(audited.first, accusation.proof);
  check(finding.result != proof_finding::kind::confirmed);
  check(finding.result == proof_finding::kind::refused || !accusation.proof.empty());
}

void check_state_manifest(const state_manifest& manifest) {
  const state_limits limits;
  if (validate_state_manifest(manifest, limits))
    return;
  check(manifest.chunk_bytes > 0 && manifest.chunk_bytes <= limits.max_chunk_bytes);
  check(manifest.total_bytes <= limits.max_total_bytes && manifest.epoch >= 0);
  check(manifest.chunk_count == state_chunk_count(manifest.total_bytes, manifest.chunk_bytes));
  if (manifest.chunk_count == 0)
    return;
  const auto last = chunk_range(manifest, manifest.chunk_count - 1);
  check(last.size > 0 && last.size <= manifest.chunk_bytes);
  check(last.offset + last.size == manifest.total_bytes);
}

void check_state_chunk(const state_chunk& chunk) {
  const auto& manifest = fuzz_manifest();
  for (const bool reseal : {false, true}) {
    state_chunk copy = chunk;
    if (reseal)
      copy.checksum = state_chunk_checksum(copy.digest, copy.index, copy.bytes);
    // The chunk it claims to be, as if asked for (else chunk 0).
    const uint64_t asked = copy.index < manifest.chunk_count ? copy.index : 0;
    if (validate_state_chunk(copy, manifest, asked))
      continue;
    check(copy.digest == manifest.digest && copy.index == asked);
    check(copy.bytes.size() == chunk_range(manifest, asked).size);
    state_assembly assembly(manifest);
    check(assembly.accept(copy) && assembly.has(asked));
  }
}

void check_velocity_request(const velocity_request& request) {
  // What blob_to_tensor asks of both tensors before anything else (models/tensor_wire.cpp).
  blob_expectations expected;
  expected.dtype = static_cast<uint8_t>(blob_dtype::float32);
  expected.codec = blob_codec_none;
  check_blob_against(request.x, expected);
  check_blob_against(request.t, expected);
}

template <class T>
void decode_and_check(std::span<const std::uint8_t> bytes, void (*check_value)(const T&)) {
  decoding_unit unit;
  T value;
  if (decode(bytes, unit, value))
    check_value(value);
}

// --- the seed corpus --------------------------------------------------------------------------

// Sample values that their checks accept, made the same way on every run (Ed25519 signatures of
// a fixed key are deterministic), so the corpus can be written again byte for byte.
class seed_writer {
 public:
  explicit seed_writer(std::filesystem::path folder) : folder_(std::move(folder)) {
    std::filesystem::create_directories(folder_);
  }

  // The type byte and the value's encoding; the encoding must decode again.
  template <class T>
  std::vector<char> encode(uint8_t type, T value) {
    std::vector<char> bytes{static_cast<char>(type)};
    caf::binary_serializer sink{unit_.get(), bytes};
    check(!sink(value));
    T again;
    const auto* encoded = reinterpret_cast<const std::uint8_t*>(bytes.data());
    check(decode(std::span(encoded + 1, bytes.size() - 1), unit_, again));
    return bytes;
  }

  void write(const std::string& name, const std::vector<char>& bytes) {
    std::ofstream file(folder_ / name, std::ios::binary | std::ios::trunc);
    file.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    check(file.good());
    ++written_;
  }

  // A handle of a remote node that stays the same from run to run.
  template <class Handle>
  Handle remote_handle(caf::actor_id id) {
    caf::node_id::default_data::host_id_type host;
    host.fill(0x5a);
    return caf::actor_cast<Handle>(unit_.proxy(caf::make_node_id(4242, host), id));
  }

  std::size_t written() const { return written_; }

 private:
  std::filesystem::path folder_;
  decoding_unit unit_;
  std::size_t written_ = 0;
};

// An encoding whose byte vector, empty and followed by `after` bytes, claims 4 GiB - 1 instead.
std::vector<char> with_huge_length(std::vector<char> bytes, std::size_t after) {
  const auto at = bytes.size() - after - 1;
  check(bytes[at] == 0);
  const char huge[] = {'\xff', '\xff', '\xff', '\xff', '\x0f'};
  bytes.erase(bytes.begin() + static_cast<std::ptrdiff_t>(at));
  bytes.insert(bytes.begin() + static_cast<std::ptrdiff_t>(at), std::begin(huge), std::end(huge));
  return bytes;
}

peer_key seed_key() {
  std::array<uint8_t, 32> seed;
  seed.fill(0x11);
  return peer_key::from_seed(seed);
}

peer_info sample_info(int n) {
  peer_info info;
  info.peer_id = peer_id_of(seed_key().public_part());
  info.peer_id[0] = static_cast<char>('0' + n);
  info.host = "10.0.0." + std::to_string(n);
  info.port = 7000;
  info.swarm_id = fuzz_swarm;
  info.incarnation = 3;
  info.reachable = n % 2 == 0;
  info.relays = {"10.0.0.9:7001"};
  info.alternates = {"[fd00::7]:7000"};
  return info;
}

int write_seeds(const std::filesystem::path& folder) {
  seed_writer seeds(folder);
  const auto key = seed_key();
  const auto peer = sample_info(1);
  seeds.write("00_peer_info", seeds.encode(0, peer));
  const auto list = seeds.encode(1, std::vector<peer_info>{peer, sample_info(2)});
  seeds.write("01_peer_list", list);

  swarm_member member;
  member.info = peer;
  member.info.peer_id = peer_id_of(key.public_part());
  member.membership = seeds.remote_handle<membership_remote>(1);
  member.progress = seeds.remote_handle<progress_remote>(2);
  member.averager = seeds.remote_handle<averager_remote>(3);
  member.state_server = seeds.remote_handle<state_server_remote>(4);
  sign_hello(member, key, caf::to_string(member.membership.node()));
  const auto hello = seeds.encode(2, member);
  seeds.write("02_swarm_member", hello);

  progress_report report;
  report.peer_id = peer_id_of(key.public_part());
  report.swarm_id = fuzz_swarm;
  report.epoch = 5;
  report.samples = 640;
  report.samples_per_second = 120.5;
  report.state_digest = 0x1234;
  report.sequence = 99;
  report.link_rate = 12.5e6;
  sign_report(report, key);
  seeds.write("03_progress_report", seeds.encode(3, report));

  round_request request{peer.peer_id, fuzz_swarm, 5, 640, 4096,
                        seeds.remote_handle<averaging_group_remote>(3), 12.5e6, true};
  seeds.write("04_round_request", seeds.encode(4, request));

  group_assignment assignment;
  assignment.round_id = 77;
  assignment.epoch = 5;
  assignment.length = 24;
  for (int m = 0; m < 3; ++m)
    assignment.members.push_back({sample_info(m).peer_id,
                                  seeds.remote_handle<averaging_group_remote>(10 + m),
                                  100.0 * (m + 1), static_cast<uint64_t>(m == 2 ? 0 : 1)});
  assignment.deadline_ms = 30000;
  sign_assignment(assignment, key);
  seeds.write("05_group_assignment", seeds.encode(5, assignment));

  const std::vector<float> four{0.5f, -1.25f, 3.0f, 1e-3f};
  const auto blob = make_float32_blob(7, 1, 8, four);
  seeds.write("06_tensor_blob", seeds.encode(6, blob));

  const auto scatter = seeds.encode(7, allreduce_chunk{chunk_round_id, 0b111, 0, 1,
                                                       make_float32_blob(chunk_round_id, 0, 0,
                                                                         four),
                                                       {}});
  seeds.write("07_allreduce_chunk_scatter", scatter);
  seeds.write("07_allreduce_chunk_gather",
              seeds.encode(7, allreduce_chunk{chunk_round_id, 0b111, 1, 2,
                                              make_float32_blob(chunk_round_id, 2, 0, four),
                                              {}}));

  const uint64_t digest = finished_round().second;
  seeds.write("08_round_digest", seeds.encode(8, round_digest{digest_round_id, 0b11, 1, digest,
                                                              16, 1e6}));
  seeds.write("09_state_manifest", seeds.encode(9, fuzz_manifest()));
  state_chunk chunk;
  chunk.digest = fuzz_manifest().digest;
  chunk.index = 1;
  chunk.bytes.assign(fuzz_state().begin() + 40, fuzz_state().begin() + 80);
  chunk.checksum = state_chunk_checksum(chunk.digest, chunk.index, chunk.bytes);
  seeds.write("10_state_chunk", seeds.encode(10, chunk));

  velocity_request velocity;
  velocity.x = make_float32_blob(0, 0, 0, four);
  velocity.x.shape = {1, 1, 2, 2};
  seal(velocity.x);
  velocity.t = make_float32_blob(0, 0, 0, std::vector<float>{0.25f});
  velocity.labels = {3};
  velocity.is_null = {0};
  velocity.cfg_scale = 2.0;
  seeds.write("11_velocity_request", seeds.encode(11, velocity));
  generate_request generate;
  generate.class_index = 3;
  generate.count = 2;
  seeds.write("12_generate_request", seeds.encode(12, generate));
  seeds.write("13_audit_request", seeds.encode(13, audit_request{digest_round_id, 2, 0b111, {0, 2}}));
  const auto evidence = audited_round().second;
  check(!evidence.empty());
  const auto shown = seeds.encode(14, evidence.front());
  seeds.write("14_audit_evidence", shown);
  auto unsigned_evidence = evidence.front();
  unsigned_evidence.proof = {};
  seeds.write("14_audit_evidence_unsigned", seeds.encode(14, unsigned_evidence));
  seeds.write("hostile_truncated_audit_evidence",
              std::vector<char>(shown.begin(), shown.end() - 7));
  seeds.write("15_audit_accusation", seeds.encode(15, audit_accusation{digest_round_id, 1, 2, {}}));
  seeds.write("15_audit_accusation_proof",
              seeds.encode(15, audit_accusation{digest_round_id, 1, 2, evidence}));

  // Found by fuzzing: a zero dimension behind a non-zero one, accepted, then unreadable.
  auto hollow = make_float32_blob(7, 1, 8, std::vector<float>{});
  hollow.shape = {1, 0, 0, 0};
  seal(hollow);
  seeds.write("regression_blob_zero_dimension", seeds.encode(6, hollow));

  // Hostile: byte vectors that claim 4 GiB in a message of a few dozen bytes.
  tensor_blob empty_blob = blob;
  empty_blob.bytes.clear();
  seeds.write("hostile_blob_huge_length", with_huge_length(seeds.encode(6, empty_blob), 8));
  state_chunk empty_chunk = chunk;
  empty_chunk.bytes.clear();
  seeds.write("hostile_state_chunk_huge_length",
              with_huge_length(seeds.encode(10, empty_chunk), 8));
  velocity_request no_flags = velocity;
  no_flags.is_null.clear();
  seeds.write("hostile_velocity_flags_huge_length",
              with_huge_length(seeds.encode(11, no_flags), 8));
  // A list that claims 2^32 - 1 peers and holds one.
  std::vector<char> many{1, '\xff', '\xff', '\xff', '\xff', '\x0f'};
  const auto one = seeds.encode(0, peer);
  many.insert(many.end(), one.begin() + 1, one.end());
  seeds.write("hostile_peer_list_huge_count", many);
  // A length whose varbyte encoding never ends (CAF shifts past 32 bits; must not matter).
  std::vector<char> endless(40, '\x80');
  endless[0] = 0;
  seeds.write("hostile_endless_length", endless);
  seeds.write("hostile_truncated_swarm_member",
              std::vector<char>(hello.begin(), hello.begin() + hello.size() / 2));
  seeds.write("hostile_truncated_chunk", std::vector<char>(scatter.begin(), scatter.end() - 5));
  // Another type's bytes, and a type byte no type has.
  auto confused = list;
  confused[0] = 2;
  seeds.write("hostile_list_as_member", confused);
  auto unknown = list;
  unknown[0] = '\xee';
  seeds.write("hostile_wrong_type", unknown);
  std::printf("wrote %zu seeds to %s\n", seeds.written(), folder.c_str());
  return 0;
}

} // namespace

// fuzz_driver_main.cpp hands command lines to the target first: this one writes its seeds.
extern "C" int ddactor_fuzz_command(int argc, char** argv) {
  if (argc != 3 || std::string(argv[1]) != "--write-seeds")
    return -1;
  return write_seeds(argv[2]);
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0)
    return 0;
  const std::span<const std::uint8_t> rest(data + 1, size - 1);
  switch (data[0]) {
    case 0: decode_and_check<peer_info>(rest, check_peer_info); break;
    case 1: decode_and_check<std::vector<peer_info>>(rest, check_peer_list); break;
    case 2: decode_and_check<swarm_member>(rest, check_swarm_member); break;
    case 3: decode_and_check<progress_report>(rest, check_progress_report); break;
    case 4: decode_and_check<round_request>(rest, check_round_request); break;
    case 5: decode_and_check<group_assignment>(rest, check_group_assignment); break;
    case 6: decode_and_check<tensor_blob>(rest, check_tensor_blob); break;
    case 7: decode_and_check<allreduce_chunk>(rest, check_allreduce_chunk); break;
    case 8: decode_and_check<round_digest>(rest, check_round_digest); break;
    case 9: decode_and_check<state_manifest>(rest, check_state_manifest); break;
    case 10: decode_and_check<state_chunk>(rest, check_state_chunk); break;
    case 11: decode_and_check<velocity_request>(rest, check_velocity_request); break;
    case 12: decode_and_check<generate_request>(rest, +[](const generate_request&) {}); break;
    case 13: decode_and_check<audit_request>(rest, +[](const audit_request&) {}); break;
    case 14: decode_and_check<audit_evidence>(rest, check_audit_evidence); break;
    case 15: decode_and_check<audit_accusation>(rest, check_audit_accusation); break;
    default: break;  // no such type: a peer's message of another type fails CAF's type check
  }
  return 0;
}
