// The attach protocol without sockets: both sides accept each other only with the same key, the
// trainer proves first, no proof is replayed or reflected, every malformed or truncated message
// is refused, frames are bounded before their body arrives, and assignments round-trip.
#include "runtime/secure/attach_protocol.hpp"

#include <gtest/gtest.h>

#include <vector>

namespace ddactor {
namespace {

attach_key key_of(uint8_t fill) {
  attach_key key{};
  key.fill(fill);
  return key;
}

struct handshake_pair {
  attach_server_handshake peer;
  attach_client_handshake trainer;
  handshake_pair(const attach_key& peer_key, const attach_key& trainer_key)
    : peer(peer_key, random_attach_nonce()),
      trainer(trainer_key, random_attach_nonce(), {4242, "cpu"}) {}
  // Runs the messages back and forth until one side stops answering.
  void run() {
    auto challenge = peer.on_payload(trainer.hello());
    if (challenge.empty())
      return;
    auto proof = trainer.on_payload(challenge);
    if (proof.empty())
      return;
    auto welcome = peer.on_payload(proof);
    if (!welcome.empty())
      trainer.on_payload(welcome);
  }
};

TEST(attach_protocol, the_same_key_on_both_sides_attaches) {
  handshake_pair pair(key_of(7), key_of(7));
  pair.run();
  EXPECT_EQ(pair.peer.current(), attach_server_handshake::state::accepted);
  EXPECT_EQ(pair.trainer.current(), attach_client_handshake::state::accepted);
  EXPECT_EQ(pair.peer.client().pid, 4242u);
  EXPECT_EQ(pair.peer.client().device, "cpu");
}

TEST(attach_protocol, a_stranger_is_refused_before_the_peer_says_anything_keyed) {
  attach_server_handshake peer(key_of(7), random_attach_nonce());
  attach_client_handshake stranger(key_of(8), random_attach_nonce(), {1, "cpu"});
  const auto challenge = peer.on_payload(stranger.hello());
  ASSERT_FALSE(challenge.empty());
  const auto proof = stranger.on_payload(challenge);
  ASSERT_FALSE(proof.empty());
  EXPECT_TRUE(peer.on_payload(proof).empty());  // no welcome: nothing computed with the key
  EXPECT_EQ(peer.current(), attach_server_handshake::state::refused);
  EXPECT_EQ(peer.refusal(), attach_refusal::wrong_key);
}

TEST(attach_protocol, a_trainer_leaves_a_process_that_does_not_hold_the_key) {
  attach_client_handshake trainer(key_of(7), random_attach_nonce(), {1, "cpu"});
  trainer.hello();
  std::vector<uint8_t> challenge{static_cast<uint8_t>(attach_message::challenge)};
  challenge.resize(1 + 32, 3);
  ASSERT_FALSE(trainer.on_payload(challenge).empty());
  std::vector<uint8_t> forged_welcome{static_cast<uint8_t>(attach_message::welcome)};
  forged_welcome.resize(1 + 32, 9);
  trainer.on_payload(forged_welcome);
  EXPECT_EQ(trainer.current(), attach_client_handshake::state::refused);
}

TEST(attach_protocol, a_recorded_proof_is_refused_in_another_connection) {
  const auto key = key_of(7);
  attach_server_handshake first(key, random_attach_nonce());
  attach_client_handshake trainer(key, random_attach_nonce(), {1, "cpu"});
  const auto hello = trainer.hello();
  const auto proof = trainer.on_payload(first.on_payload(hello));
  ASSERT_FALSE(first.on_payload(proof).empty());
  // The eavesdropper replays hello and proof to the peer, which picks a fresh nonce.
  attach_server_handshake second(key, random_attach_nonce());
  second.on_payload(hello);
  EXPECT_TRUE(second.on_payload(proof).empty());
  EXPECT_EQ(second.refusal(), attach_refusal::wrong_key);
}

TEST(attach_protocol, the_peers_welcome_is_no_trainer_proof) {
  const auto key = key_of(7);
  const auto peer_nonce = random_attach_nonce();
  attach_server_handshake peer(key, peer_nonce);
  attach_client_handshake trainer(key, random_attach_nonce(), {1, "cpu"});
  const auto proof = trainer.on_payload(peer.on_payload(trainer.hello()));
  auto welcome = peer.on_payload(proof);
  ASSERT_EQ(welcome.size(), 33u);
  // The same bytes as a proof (type changed, pid and device added) to a peer with the same
  // nonces: only the label tells them apart.
  attach_server_handshake other(key, peer_nonce);
  other.on_payload(trainer.hello());
  welcome[0] = static_cast<uint8_t>(attach_message::proof);
  welcome.insert(welcome.end(), {0, 0, 0, 1, 0});
  EXPECT_TRUE(other.on_payload(welcome).empty());
  EXPECT_EQ(other.current(), attach_server_handshake::state::refused);
}

TEST(attach_protocol, every_truncation_or_extension_of_a_message_is_refused) {
  const auto key = key_of(7);
  attach_client_handshake trainer(key, random_attach_nonce(), {99, "cuda:1"});
  const auto hello = trainer.hello();
  for (size_t size = 0; size <= hello.size() + 1; ++size) {
    if (size == hello.size())
      continue;
    auto bytes = hello;
    bytes.resize(size, 0);
    attach_server_handshake peer(key, random_attach_nonce());
    EXPECT_TRUE(peer.on_payload(bytes).empty()) << size;
    EXPECT_EQ(peer.refusal(), attach_refusal::malformed) << size;
  }
  attach_server_handshake peer(key, random_attach_nonce());
  const auto proof = trainer.on_payload(peer.on_payload(hello));
  for (size_t size = 0; size < proof.size(); ++size) {
    attach_server_handshake fresh(key, random_attach_nonce());
    fresh.on_payload(hello);
    EXPECT_TRUE(fresh.on_payload({proof.data(), size}).empty()) << size;
    EXPECT_EQ(fresh.current(), attach_server_handshake::state::refused) << size;
  }
  auto wrong_magic = hello;
  wrong_magic[3] ^= 1;
  attach_server_handshake other(key, random_attach_nonce());
  EXPECT_TRUE(other.on_payload(wrong_magic).empty());
  EXPECT_EQ(other.refusal(), attach_refusal::malformed);
}

TEST(attach_protocol, frames_are_split_and_bounded_before_their_body_arrives) {
  attach_frame_reader reader;
  std::vector<uint8_t> payload;
  const std::vector<uint8_t> one{1, 2, 3};
  const std::vector<uint8_t> two(attach_max_frame, 5);
  auto stream = attach_frame(one);
  const auto second = attach_frame(two);
  stream.insert(stream.end(), second.begin(), second.end());
  // Byte by byte: a frame comes out exactly when its last byte arrives.
  std::vector<std::vector<uint8_t>> frames;
  for (uint8_t byte : stream) {
    reader.append({&byte, 1});
    while (reader.next(payload) == attach_frame_reader::status::frame)
      frames.push_back(payload);
  }
  ASSERT_EQ(frames.size(), 2u);
  EXPECT_EQ(frames[0], one);
  EXPECT_EQ(frames[1], two);
  // A length over the bound is refused from its 4 bytes alone.
  for (uint32_t length : {attach_max_frame + 1, 0x47455420u /* "GET " */, 0xffffffffu}) {
    attach_frame_reader bounded;
    const uint8_t header[4] = {static_cast<uint8_t>(length >> 24),
                               static_cast<uint8_t>(length >> 16),
                               static_cast<uint8_t>(length >> 8), static_cast<uint8_t>(length)};
    bounded.append(header);
    EXPECT_EQ(bounded.next(payload), attach_frame_reader::status::oversized) << length;
  }
}

TEST(attach_protocol, assignments_round_trip_and_nonsense_is_refused) {
  attach_assignment a;
  a.generation = 7;
  a.rank = 2;
  a.ranks = 3;
  a.store_port = 41234;
  a.store_prefix = "set-0123456789abcdef/";
  a.data_seed = 0x1234567890abcdefULL;
  a.micro_batch_size = 5;
  a.swarm = true;
  const auto bytes = encode_assignment(a);
  ASSERT_LE(bytes.size(), attach_max_frame);
  const auto back = decode_assignment(bytes);
  ASSERT_TRUE(back);
  EXPECT_EQ(back->generation, 7u);
  EXPECT_EQ(back->rank, 2);
  EXPECT_EQ(back->ranks, 3);
  EXPECT_EQ(back->store_port, 41234);
  EXPECT_EQ(back->store_prefix, a.store_prefix);
  EXPECT_EQ(back->data_seed, a.data_seed);
  EXPECT_EQ(back->micro_batch_size, 5);
  EXPECT_TRUE(back->swarm);
  for (size_t size = 0; size < bytes.size(); ++size)
    EXPECT_FALSE(decode_assignment({bytes.data(), size})) << size;
  auto longer = bytes;
  longer.push_back(0);
  EXPECT_FALSE(decode_assignment(longer));
  for (auto [rank, ranks] : {std::pair{0, 3}, {3, 3}, {1, 1}, {-1, 3}}) {
    auto bad = a;
    bad.rank = rank;
    bad.ranks = ranks;
    EXPECT_FALSE(decode_assignment(encode_assignment(bad))) << rank << " of " << ranks;
  }
  EXPECT_TRUE(is_end(encode_end()));
  EXPECT_FALSE(is_end(bytes));
  EXPECT_FALSE(decode_assignment(encode_end()));
}

} // namespace
} // namespace ddactor
