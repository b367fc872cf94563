// The link handshake; see handshake.hpp for the messages and what each proves.
#include "runtime/secure/handshake.hpp"

#include <sodium.h>

#include <algorithm>
#include <cstring>

namespace ddactor {

namespace {

constexpr std::array<uint8_t, 8> magic{'D', 'D', 'L', 'I', 'N', 'K', '0', '1'};
using digest = std::array<uint8_t, 32>;

std::span<const uint8_t> bytes_of(std::string_view text) {
  return {reinterpret_cast<const uint8_t*>(text.data()), text.size()};
}

// BLAKE2b-256 of the parts, keyed when `key` is given.
digest hash(std::initializer_list<std::span<const uint8_t>> parts,
            const symmetric_key* key = nullptr) {
  crypto_generichash_state state;
  crypto_generichash_init(&state, key ? key->data() : nullptr, key ? key->size() : 0,
                          sizeof(digest));
  for (auto part : parts)
    crypto_generichash_update(&state, part.data(), part.size());
  digest out{};
  crypto_generichash_final(&state, out.data(), out.size());
  return out;
}

// The MAC key of messages 2 and 3: the admission key bound to this exchange's DH secret.
symmetric_key exchange_mac_key(const symmetric_key& admission, const std::array<uint8_t, 32>& dh) {
  return hash({bytes_of("mac"), dh}, &admission);
}

bool equal(std::span<const uint8_t> a, std::span<const uint8_t> b) {
  return a.size() == b.size() && sodium_memcmp(a.data(), b.data(), a.size()) == 0;
}

void append(std::vector<uint8_t>& out, std::span<const uint8_t> part) {
  out.insert(out.end(), part.begin(), part.end());
}

template <size_t N>
std::array<uint8_t, N> take(std::span<const uint8_t>& message) {
  std::array<uint8_t, N> out{};
  std::copy_n(message.begin(), N, out.begin());
  message = message.subspan(N);
  return out;
}

} // namespace

admission_policy admission_policy::of_swarm(std::optional<symmetric_key> swarm_key,
                                            std::set<public_key> allowlist) {
  require_sodium();
  admission_policy policy;
  policy.admission_key =
    hash({bytes_of("ddactor swarm admission v1")}, swarm_key ? &*swarm_key : nullptr);
  policy.allowlist = std::move(allowlist);
  return policy;
}

std::string_view to_string(handshake_failure failure) {
  switch (failure) {
    case handshake_failure::bad_version: return "bad_version";
    case handshake_failure::wrong_swarm: return "wrong_swarm_key";
    case handshake_failure::bad_signature: return "bad_signature";
    case handshake_failure::not_allowed: return "not_allowlisted";
    case handshake_failure::unexpected: return "malformed";
  }
  return "malformed";
}

handshake::handshake(role r, const peer_key& mine, admission_policy policy)
  : role_(r), mine_(mine), policy_(std::move(policy)),
    stage_(r == role::initiator ? stage::start : stage::wait_hello) {
  require_sodium();
  randombytes_buf(ephemeral_secret_.data(), ephemeral_secret_.size());
  crypto_scalarmult_base(ephemeral_public_.data(), ephemeral_secret_.data());
}

handshake::~handshake() {
  sodium_memzero(ephemeral_secret_.data(), ephemeral_secret_.size());
  sodium_memzero(dh_.data(), dh_.size());
  sodium_memzero(keys_.send.data(), keys_.send.size());
  sodium_memzero(keys_.receive.data(), keys_.receive.size());
}

std::vector<uint8_t> handshake::hello() {
  if (role_ != role::initiator || stage_ != stage::start)
    return {};
  std::vector<uint8_t> message;
  append(message, magic);
  append(message, ephemeral_public_);
  auto mac = hash({bytes_of("1"), message}, &policy_.admission_key);
  append(message, mac);
  transcript_ = message;
  stage_ = stage::wait_reply;
  return message;
}

size_t handshake::expected_bytes() const {
  switch (stage_) {
    case stage::wait_hello: return hello_size;
    case stage::wait_reply: return reply_size;
    case stage::wait_finish: return finish_size;
    default: return 0;
  }
}

handshake::step handshake::receive(std::span<const uint8_t> message) {
  if (message.size() != expected_bytes() || expected_bytes() == 0)
    return fail(handshake_failure::unexpected);
  switch (stage_) {
    case stage::wait_hello: return on_hello(message);
    case stage::wait_reply: return on_reply(message);
    case stage::wait_finish: return on_finish(message);
    default: return fail(handshake_failure::unexpected);
  }
}

bool handshake::hello_admitted(std::span<const uint8_t> hello, const admission_policy& policy) {
  if (hello.size() != hello_size || !equal(hello.first(8), magic))
    return false;
  auto expected = hash({bytes_of("1"), hello.first(40)}, &policy.admission_key);
  return equal(hello.subspan(40, 32), expected);
}

std::span<const uint8_t, 8> handshake::link_magic() { return std::span<const uint8_t, 8>(magic); }

handshake::step handshake::fail(handshake_failure failure) {
  stage_ = stage::failed;
  return {{}, failure};
}

handshake::step handshake::on_hello(std::span<const uint8_t> message) {
  auto rest = message;
  auto their_magic = take<8>(rest);
  if (!equal(their_magic, magic))
    return fail(handshake_failure::bad_version);
  auto their_ephemeral = take<32>(rest);
  auto mac = take<32>(rest);
  auto expected = hash({bytes_of("1"), message.first(40)}, &policy_.admission_key);
  if (!equal(mac, expected))
    return fail(handshake_failure::wrong_swarm);
  if (crypto_scalarmult(dh_.data(), ephemeral_secret_.data(), their_ephemeral.data()) != 0)
    return fail(handshake_failure::unexpected);
  std::vector<uint8_t> reply;
  append(reply, ephemeral_public_);
  append_proof(reply, hash({message, ephemeral_public_, mine_.public_part()}), "2", "r");
  transcript_.assign(message.begin(), message.end());
  append(transcript_, reply);
  stage_ = stage::wait_finish;
  return {std::move(reply), std::nullopt};
}

handshake::step handshake::on_reply(std::span<const uint8_t> message) {
  auto rest = message;
  auto their_ephemeral = take<32>(rest);
  auto their_key = take<32>(rest);
  auto sig = take<64>(rest);
  auto mac = take<32>(rest);
  if (crypto_scalarmult(dh_.data(), ephemeral_secret_.data(), their_ephemeral.data()) != 0)
    return fail(handshake_failure::unexpected);
  auto h2 = hash({transcript_, their_ephemeral, their_key});
  if (auto failure = check_proof(their_key, sig, mac, h2, "2", "r"))
    return fail(*failure);
  remote_ = their_key;
  append(transcript_, message);
  std::vector<uint8_t> finish;
  append_proof(finish, hash({transcript_, mine_.public_part()}), "3", "i");
  append(transcript_, finish);
  derive_keys();
  stage_ = stage::done;
  return {std::move(finish), std::nullopt};
}

handshake::step handshake::on_finish(std::span<const uint8_t> message) {
  auto rest = message;
  auto their_key = take<32>(rest);
  auto sig = take<64>(rest);
  auto mac = take<32>(rest);
  auto h3 = hash({transcript_, their_key});
  if (auto failure = check_proof(their_key, sig, mac, h3, "3", "i"))
    return fail(*failure);
  remote_ = their_key;
  append(transcript_, message);
  derive_keys();
  stage_ = stage::done;
  return {{}, std::nullopt};
}

// This side's proofs for transcript hash h, the counterpart of check_proof: its key, its
// signature and the MAC.
void handshake::append_proof(std::vector<uint8_t>& out, const std::array<uint8_t, 32>& h,
                             std::string_view mac_label, std::string_view sig_label) const {
  const auto mac_key = exchange_mac_key(policy_.admission_key, dh_);
  append(out, mine_.public_part());
  append(out, mine_.sign(hash({bytes_of(sig_label), h})));
  append(out, hash({bytes_of(mac_label), h}, &mac_key));
}

// The other side's proofs for transcript hash h: the MAC (admission key and this exchange's DH
// secret), the signature of its key, and its key's place on the allowlist.
std::optional<handshake_failure> handshake::check_proof(const public_key& their_key,
                                                        const signature& sig,
                                                        const std::array<uint8_t, 32>& mac,
                                                        const std::array<uint8_t, 32>& h,
                                                        std::string_view mac_label,
                                                        std::string_view sig_label) const {
  auto mac_key = exchange_mac_key(policy_.admission_key, dh_);
  if (!equal(mac, hash({bytes_of(mac_label), h}, &mac_key)))
    return handshake_failure::wrong_swarm;
  if (!verify_signature(their_key, hash({bytes_of(sig_label), h}), sig))
    return handshake_failure::bad_signature;
  if (!policy_.allowlist.empty() && !policy_.allowlist.contains(their_key))
    return handshake_failure::not_allowed;
  return std::nullopt;
}

void handshake::derive_keys() {
  auto whole = hash({transcript_});
  std::array<uint8_t, 64> material{};
  crypto_generichash_state state;
  crypto_generichash_init(&state, policy_.admission_key.data(), policy_.admission_key.size(),
                          material.size());
  auto label = bytes_of("keys");
  crypto_generichash_update(&state, label.data(), label.size());
  crypto_generichash_update(&state, dh_.data(), dh_.size());
  crypto_generichash_update(&state, whole.data(), whole.size());
  crypto_generichash_final(&state, material.data(), material.size());
  symmetric_key initiator_to_responder{};
  symmetric_key responder_to_initiator{};
  std::copy_n(material.begin(), 32, initiator_to_responder.begin());
  std::copy_n(material.begin() + 32, 32, responder_to_initiator.begin());
  sodium_memzero(material.data(), material.size());
  if (role_ == role::initiator)
    keys_ = {initiator_to_responder, responder_to_initiator};
  else
    keys_ = {responder_to_initiator, initiator_to_responder};
}

} // namespace ddactor
