#pragma once
// What peers of a swarm send each other. Every type here crosses the network, so each is plain
// data with an inspect() overload and a type ID in ddactor's block (runtime/message_types.hpp);
// tensors travel as tensor_blob bytes, never as torch::Tensor. Receivers validate everything
// before it touches their state (see the validate_* functions).
//
// Message table (atom, payload -> reply), one line per exchange:
//
//   membership  (hello, swarm_member, bool want_known) -> (swarm_member, std::vector<peer_info>)
//                                                known list only when asked (bootstrap dials)
//               (gossip, peer_info, std::vector<peer_info>)      heartbeat + view, no reply
//               (leave, std::string peer_id)                     clean shutdown, no reply
//   progress    (progress, progress_report)                      no reply
//   averager    (join, round_request)            -> group_assignment | error (round closed)
//   group       (chunk, allreduce_chunk)                         scatter and gather, no reply
//               (digest, round_digest)                           result check, no reply
//               (audit, audit_request)          -> (audit, audit_evidence) x pieces
//               (audit, audit_accusation)                        "this reducer lied: the proof"
//   state       (state, std::string swarm_id, int64_t min_epoch) -> state_manifest | error
//               (state, uint64_t digest, uint64_t chunk_index) -> state_chunk | error
//   expert      (velocity, velocity_request)     -> tensor_blob (the velocity) | error
//   router      (generate, generate_request)     -> std::vector<char> (a PNG) | error
//               (status)                         -> std::string (JSON)

#include <cstdint>
#include <string>
#include <vector>

#include "caf/all.hpp"

#include "runtime/allreduce/round_messages.hpp"
#include "runtime/atoms.hpp"
#include "runtime/peer_address.hpp"
#include "runtime/tensor_blob.hpp"

namespace ddactor {

struct peer_info;
struct swarm_member;
struct progress_report;
struct round_request;
struct group_assignment;
struct state_manifest;
struct state_chunk;
struct velocity_request;
struct generate_request;

// The remote interfaces: the table above in types, what another node may send each actor. The
// handles peers exchange (hellos, round requests, assignments) have these types, so an honest
// peer cannot send anything else; a hostile one can, and each actor refuses the local part of its
// full interface (actors/<name>.hpp) from other nodes (actors/local_control.hpp).

using membership_remote = caf::typed_actor<
  caf::replies_to<hello_atom, swarm_member, bool>::with<swarm_member, std::vector<peer_info>>,
  caf::reacts_to<gossip_atom, peer_info, std::vector<peer_info>>,
  caf::reacts_to<leave_atom, std::string>,
  caf::replies_to<status_atom>::with<std::string>>;

using progress_remote = caf::typed_actor<caf::reacts_to<progress_atom, progress_report>>;

/// The averager as a leader of matchmaking.
using averager_remote =
  caf::typed_actor<caf::replies_to<join_atom, round_request>::with<group_assignment>>;

/// One peer's actor of one averaging round (actors/averaging_group.hpp).
using averaging_group_remote = caf::typed_actor<
  caf::reacts_to<chunk_atom, allreduce_chunk>,
  caf::reacts_to<digest_atom, round_digest>,
  caf::reacts_to<audit_atom, audit_request>,
  caf::reacts_to<audit_atom, audit_evidence>,
  caf::reacts_to<audit_atom, audit_accusation>>;

using state_server_remote = caf::typed_actor<
  caf::replies_to<state_atom, std::string, int64_t /*min_epoch*/>::with<state_manifest>,
  caf::replies_to<state_atom, uint64_t /*digest*/, uint64_t /*index*/>::with<state_chunk>>;

using expert_remote =
  caf::typed_actor<caf::replies_to<velocity_atom, velocity_request>::with<tensor_blob>>;

/// A DDM router (actors/generator.hpp), published on serve.listen.
using router_remote = caf::typed_actor<
  caf::replies_to<generate_atom, generate_request>::with<std::vector<char> /*PNG*/>,
  caf::replies_to<status_atom>::with<std::string /*JSON*/>>;

/// Who a peer is and where it can be reached.
struct peer_info {
  /// Stable across restarts (kept in the peer's state folder); 32 hex characters.
  std::string peer_id;
  /// The address other peers dial first (network.announce, else what discovery found); an IPv6
  /// address without brackets.
  std::string host;
  uint16_t port = 0;
  /// Peers average only with peers of the same swarm id (e.g. "expert-3" in DDM mode).
  std::string swarm_id;
  /// Grows with every restart of the process, so a stale entry is superseded.
  uint64_t incarnation = 0;
  /// False for a peer that cannot accept connections (behind NAT or a firewall): nobody dials
  /// host:port; it dials the reachable peers itself, and the unreachable peers it does not dial
  /// reach it through one of `relays`.
  bool reachable = true;
  /// "host:port" of the relays that hold this peer's reservation (runtime/secure/link_gateway.hpp),
  /// at most max_relays_per_peer.
  std::vector<std::string> relays{};
  /// Other "host:port" where it accepts connections (IPv6 beside IPv4, a LAN beside the
  /// internet), tried in order when host:port fails; at most max_alternate_addresses.
  std::vector<std::string> alternates{};

  /// "host:port", "[v6]:port" for an IPv6 host.
  std::string address() const { return format_peer_address(host, port); }
  /// address(), then the alternates: where to dial it, in order.
  std::vector<std::string> addresses() const {
    std::vector<std::string> all{address()};
    all.insert(all.end(), alternates.begin(), alternates.end());
    return all;
  }
  friend bool operator==(const peer_info&, const peer_info&) = default;
};

/// A peer and the handles of its actors, as learned from the peer itself over a direct
/// connection (never second-hand, so messages to it never route through a third peer).
struct swarm_member {
  peer_info info;
  membership_remote membership;
  progress_remote progress;
  averager_remote averager;
  state_server_remote state_server;
  /// In hellos: the Ed25519 key the id derives from (32 bytes) and its signature of `info` and
  /// the sender's node (64 bytes); see runtime/secure/hello_proof.hpp. Empty elsewhere.
  std::string public_key;
  std::string signature;
};

/// A peer's training progress in its current epoch.
struct progress_report {
  std::string peer_id;
  std::string swarm_id;
  int64_t epoch = 0;
  /// Samples accumulated towards this epoch's target.
  int64_t samples = 0;
  double samples_per_second = 0;
  /// Whether it has reached the target and waits for the round.
  bool ready = false;
  /// state_digest_of its weights at the start of this epoch (0: not known yet); peers of one
  /// epoch compare them to find a split (runtime/state_agreement.hpp).
  uint64_t state_digest = 0;
  /// It stepped alone while others exist and waits for the swarm's state: its own is not the
  /// swarm's, so it is the last choice of a peer that needs a state.
  bool resyncing = false;
  /// False for the epoch a peer reached by downloading the state: peers that chose this epoch's
  /// leader before its report arrived did not count it, so it joins this epoch's round but never
  /// leads it (two leaders would split the epoch).
  bool may_lead = true;
  /// Grows with every report its author signs (from the wall clock at start, so a restarted
  /// peer continues above its last run): a report below the newest one seen is a replay.
  uint64_t sequence = 0;
  /// The author's link rate as its own rounds measured it (bytes per second, the limiting
  /// direction; 0: not yet): unreachable peers ask the fastest reachable ones to relay for them.
  double link_rate = 0;
  /// The author's Ed25519 public key and its signature of the fields above
  /// (runtime/secure/report_proof.hpp); empty where proofs are not required.
  std::string public_key;
  std::string signature;
};

/// A peer's request to take part in the averaging round of an epoch.
struct round_request {
  std::string peer_id;
  std::string swarm_id;
  int64_t epoch = 0;
  /// Samples behind its contribution (the all-reduce weight).
  double weight = 0;
  /// Length of the vector it will average (all members must agree).
  uint64_t length = 0;
  /// Its group actor for this round: the members' chunks go there.
  averaging_group_remote group;
  /// Its link rate in bytes per second (averaging.bandwidth, or measured by its rounds: the
  /// smaller of upload and download); 0 when not known yet.
  double link_rate = 0;
  /// False behind NAT: members reach it only over links it opened (or through relays), so it
  /// reduces no part of the vector.
  bool reachable = true;
};

struct group_member {
  std::string peer_id;
  averaging_group_remote group;
  double weight = 0;
  /// Its share of the vector to reduce (runtime/allreduce/bandwidth_shares.hpp): parts are
  /// proportional to the shares of an attempt's members; 0 reduces nothing.
  uint64_t part_share = 1;
};

/// The leader's answer: who averages together in which round.
struct group_assignment {
  uint64_t round_id = 0;
  int64_t epoch = 0;
  uint64_t length = 0;
  /// Ordered; a member's index is its position. At most 64 members.
  std::vector<group_member> members;
  /// How long the round may take from the assignment, in ms (round_deadline.hpp; members clamp
  /// it to their own bounds). 0: the members' allreduce_timeout.
  uint64_t deadline_ms = 0;
  /// The leader, its Ed25519 public key and its signature of the fields above
  /// (runtime/secure/assignment_proof.hpp).
  std::string leader_id;
  std::string public_key;
  std::string signature;
};

/// What a peer can serve to a late joiner: the shared training state of one epoch.
struct state_manifest {
  std::string swarm_id;
  int64_t epoch = 0;
  uint64_t total_bytes = 0;
  uint64_t chunk_bytes = 0;
  uint64_t chunk_count = 0;
  /// blob_checksum of the whole state; identical on every peer that holds the same state, so a
  /// download can resume from another peer.
  uint64_t digest = 0;
};

struct state_chunk {
  uint64_t digest = 0;
  uint64_t index = 0;
  std::vector<char> bytes;
  uint64_t checksum = 0;
};

/// DDM serving: one sampling step of some samples for one expert. `x` is (N, C, H, W) float32,
/// `t` is (N); the conditions are the samples' labels or captions and null flags.
struct velocity_request {
  tensor_blob x;
  tensor_blob t;
  std::vector<int64_t> labels;
  /// Caption tokens, N rows of token_length (models/caption_encoder.hpp).
  std::vector<int64_t> tokens;
  int64_t token_length = 0;
  std::vector<uint8_t> is_null;
  double cfg_scale = 1.0;
};

/// DDM serving: what a client asks the router for. class_index < 0 and an empty prompt mean
/// unconditional (or one row per class for class models).
struct generate_request {
  int64_t class_index = -1;
  std::string prompt;
  int32_t count = 8;
  int32_t steps = 20;
  std::string sampler = "heun";
  double cfg_scale = 2.0;
  /// "top1", "topk" or "full".
  std::string strategy = "top1";
  int32_t top_k = 2;
  uint64_t seed = 0;
};

/// A byte vector inside a message, on the wire exactly as CAF writes std::vector<char> (a varbyte
/// length, then the bytes). CAF 0.17 loads such a vector by resizing it to the length the sender
/// claims before it reads a byte: a few forged bytes claiming 4 GiB would make the receiver
/// allocate and zero 4 GiB. Through this wrapper a length beyond the bytes left in the message is
/// refused first.
template <class Byte>
struct wire_bytes {
  std::vector<Byte>& bytes;
};

template <class Byte>
caf::error load_wire_bytes(caf::deserializer& source, std::vector<Byte>& bytes) {
  // The middleman decodes messages with a binary_deserializer, the only one that knows how many
  // bytes are left; other deserializers keep CAF's own loader.
  auto* binary = dynamic_cast<caf::binary_deserializer*>(&source);
  if (binary == nullptr)
    return source(bytes);
  size_t size = 0;
  if (auto err = binary->begin_sequence(size))
    return err;
  if (size > binary->remaining())
    return caf::sec::end_of_stream;
  // Copied straight from the input: resize and apply_raw would first zero-fill the buffer, a
  // whole extra pass through memory for a 50 MB chunk.
  const auto* first = reinterpret_cast<const Byte*>(binary->remainder().data());
  bytes.assign(first, first + size);
  binary->skip(size);
  return binary->end_sequence();
}

template <class Inspector, class Byte>
typename Inspector::result_type inspect(Inspector& f, wire_bytes<Byte>& x) {
  if constexpr (Inspector::writes_state)
    return load_wire_bytes(f, x.bytes);
  else
    return f(x.bytes);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, velocity_request& x) {
  return f(caf::meta::type_name("velocity_request"), x.x, x.t, x.labels, x.tokens,
           x.token_length, wire_bytes<uint8_t>{x.is_null}, x.cfg_scale);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, generate_request& x) {
  return f(caf::meta::type_name("generate_request"), x.class_index, x.prompt, x.count, x.steps,
           x.sampler, x.cfg_scale, x.strategy, x.top_k, x.seed);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, peer_info& x) {
  return f(caf::meta::type_name("peer_info"), x.peer_id, x.host, x.port, x.swarm_id,
           x.incarnation, x.reachable, x.relays, x.alternates);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, swarm_member& x) {
  return f(caf::meta::type_name("swarm_member"), x.info, x.membership, x.progress, x.averager,
           x.state_server, x.public_key, x.signature);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, progress_report& x) {
  return f(caf::meta::type_name("progress_report"), x.peer_id, x.swarm_id, x.epoch, x.samples,
           x.samples_per_second, x.ready, x.state_digest, x.resyncing, x.may_lead, x.sequence,
           x.link_rate, x.public_key, x.signature);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, round_request& x) {
  return f(caf::meta::type_name("round_request"), x.peer_id, x.swarm_id, x.epoch, x.weight,
           x.length, x.group, x.link_rate, x.reachable);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, group_member& x) {
  return f(caf::meta::type_name("group_member"), x.peer_id, x.group, x.weight, x.part_share);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, group_assignment& x) {
  return f(caf::meta::type_name("group_assignment"), x.round_id, x.epoch, x.length, x.members,
           x.deadline_ms, x.leader_id, x.public_key, x.signature);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, tensor_blob& x) {
  return f(caf::meta::type_name("tensor_blob"), x.round_id, x.part_index, x.offset, x.shape,
           x.dtype, x.codec, wire_bytes<char>{x.bytes}, x.checksum);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, chunk_proof& x) {
  return f(caf::meta::type_name("chunk_proof"), x.public_key, x.signature);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, allreduce_chunk& x) {
  return f(caf::meta::type_name("allreduce_chunk"), x.round_id, x.member_set, x.phase, x.sender,
           x.blob, x.proof);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, audit_request& x) {
  return f(caf::meta::type_name("audit_request"), x.round_id, x.requester, x.member_set,
           x.offsets);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, audit_evidence& x) {
  return f(caf::meta::type_name("audit_evidence"), x.round_id, x.member_set, x.sender, x.blob,
           x.proof);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, audit_accusation& x) {
  return f(caf::meta::type_name("audit_accusation"), x.round_id, x.reducer, x.accuser,
           x.proof);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, round_digest& x) {
  return f(caf::meta::type_name("round_digest"), x.round_id, x.member_set, x.sender, x.digest,
           x.received_bytes, x.received_rate);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, state_manifest& x) {
  return f(caf::meta::type_name("state_manifest"), x.swarm_id, x.epoch, x.total_bytes,
           x.chunk_bytes, x.chunk_count, x.digest);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, state_chunk& x) {
  return f(caf::meta::type_name("state_chunk"), x.digest, x.index,
           wire_bytes<char>{x.bytes}, x.checksum);
}

} // namespace ddactor
