// Chunk signatures; see chunk_signature.hpp.
#include "runtime/allreduce/chunk_signature.hpp"

#include <sodium.h>

#include <array>
#include <cstring>
#include <span>

namespace ddactor {

namespace {

constexpr char domain[] = "ddactor allreduce chunk v1";

void absorb(crypto_generichash_state& state, uint64_t value) {
  std::array<unsigned char, 8> bytes{};
  for (size_t i = 0; i < bytes.size(); ++i)
    bytes[i] = static_cast<unsigned char>(value >> (8 * i));
  crypto_generichash_update(&state, bytes.data(), bytes.size());
}

// BLAKE2b-256 of everything the signature vouches for.
std::array<uint8_t, 32> statement(uint64_t round_id, uint64_t member_set, uint32_t sender,
                                  const tensor_blob& blob) {
  require_sodium();
  crypto_generichash_state state;
  crypto_generichash_init(&state, nullptr, 0, 32);
  crypto_generichash_update(&state, reinterpret_cast<const unsigned char*>(domain),
                            sizeof(domain));
  for (uint64_t field : {round_id, member_set, uint64_t{sender}, blob.round_id,
                         uint64_t{blob.part_index}, blob.offset, uint64_t{blob.dtype},
                         uint64_t{blob.codec}, uint64_t{blob.shape.size()}})
    absorb(state, field);
  for (auto extent : blob.shape)
    absorb(state, static_cast<uint64_t>(extent));
  absorb(state, blob.bytes.size());
  crypto_generichash_update(&state, reinterpret_cast<const unsigned char*>(blob.bytes.data()),
                            blob.bytes.size());
  std::array<uint8_t, 32> digest{};
  crypto_generichash_final(&state, digest.data(), digest.size());
  return digest;
}

} // namespace

chunk_proof sign_chunk(const peer_key& key, uint64_t round_id, uint64_t member_set,
                       uint32_t sender, const tensor_blob& blob) {
  const auto digest = statement(round_id, member_set, sender, blob);
  const auto sig = key.sign(digest);
  const auto& pk = key.public_part();
  return {std::string(pk.begin(), pk.end()), std::string(sig.begin(), sig.end())};
}

bool chunk_signed_by(const chunk_proof& proof, const std::string& peer_id, uint64_t round_id,
                     uint64_t member_set, uint32_t sender, const tensor_blob& blob) {
  if (proof.public_key.size() != 32 || proof.signature.size() != 64)
    return false;
  public_key pk{};
  std::memcpy(pk.data(), proof.public_key.data(), pk.size());
  if (peer_id_of(pk) != peer_id)
    return false;
  signature sig{};
  std::memcpy(sig.data(), proof.signature.data(), sig.size());
  return verify_signature(pk, statement(round_id, member_set, sender, blob), sig);
}

} // namespace ddactor
