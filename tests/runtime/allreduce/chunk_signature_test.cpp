// Chunk signatures bind a chunk to its round, attempt, sender and bytes.
#include "runtime/allreduce/chunk_signature.hpp"

#include <gtest/gtest.h>

#include <vector>

namespace ddactor {
namespace {

TEST(chunk_signature, a_signature_holds_only_for_the_chunk_and_slot_it_was_made_for) {
  const auto key = peer_key::generate();
  const auto id = peer_id_of(key.public_part());
  const std::vector<float> values{1, 2, 3, 4};
  auto blob = make_float32_blob(5, 1, 8, values);
  const auto proof = sign_chunk(key, 5, 0b111, 2, blob);
  EXPECT_TRUE(chunk_signed_by(proof, id, 5, 0b111, 2, blob));
  EXPECT_FALSE(chunk_signed_by(proof, id, 6, 0b111, 2, blob));  // another round
  EXPECT_FALSE(chunk_signed_by(proof, id, 5, 0b011, 2, blob));  // another attempt
  EXPECT_FALSE(chunk_signed_by(proof, id, 5, 0b111, 1, blob));  // another sender
  const auto other = peer_key::generate();
  EXPECT_FALSE(chunk_signed_by(proof, peer_id_of(other.public_part()), 5, 0b111, 2, blob));
  auto moved = blob;
  moved.offset = 12;
  EXPECT_FALSE(chunk_signed_by(proof, id, 5, 0b111, 2, moved));
  auto changed = blob;
  changed.bytes[0] ^= 1;
  EXPECT_FALSE(chunk_signed_by(proof, id, 5, 0b111, 2, changed));
  EXPECT_FALSE(chunk_signed_by({}, id, 5, 0b111, 2, blob));
  auto truncated = proof;
  truncated.signature.pop_back();
  EXPECT_FALSE(chunk_signed_by(truncated, id, 5, 0b111, 2, blob));
}

} // namespace
} // namespace ddactor
