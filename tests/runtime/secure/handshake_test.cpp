#include "runtime/secure/handshake.hpp"

#include <gtest/gtest.h>

#include "runtime/secure/sealed_frames.hpp"

namespace ddactor {
namespace {

symmetric_key key_of(uint8_t fill) {
  symmetric_key k{};
  k.fill(fill);
  return k;
}

struct pair_result {
  std::optional<handshake_failure> initiator_failure;
  std::optional<handshake_failure> responder_failure;
  bool both_done = false;
};

// Runs a whole exchange; `tamper` may change any message in flight (index 0, 1, 2).
pair_result run(handshake& initiator, handshake& responder,
                const std::function<void(int, std::vector<uint8_t>&)>& tamper = {}) {
  pair_result result;
  auto hello = initiator.hello();
  if (tamper)
    tamper(0, hello);
  auto reply = responder.receive(hello);
  if (reply.failure) {
    result.responder_failure = reply.failure;
    return result;
  }
  if (tamper)
    tamper(1, reply.reply);
  auto finish = initiator.receive(reply.reply);
  if (finish.failure) {
    result.initiator_failure = finish.failure;
    return result;
  }
  if (tamper)
    tamper(2, finish.reply);
  auto last = responder.receive(finish.reply);
  result.responder_failure = last.failure;
  result.both_done = initiator.done() && responder.done();
  return result;
}

TEST(handshake, members_of_one_swarm_agree_on_keys_and_learn_each_others_identity) {
  auto a = peer_key::generate(), b = peer_key::generate();
  auto policy = admission_policy::of_swarm(key_of(7));
  handshake initiator(handshake::role::initiator, a, policy);
  handshake responder(handshake::role::responder, b, policy);
  EXPECT_EQ(responder.expected_bytes(), handshake::hello_size);
  auto result = run(initiator, responder);
  ASSERT_TRUE(result.both_done);
  EXPECT_EQ(initiator.remote_key(), b.public_part());
  EXPECT_EQ(responder.remote_key(), a.public_part());
  EXPECT_EQ(initiator.keys().send, responder.keys().receive);
  EXPECT_EQ(initiator.keys().receive, responder.keys().send);
  EXPECT_NE(initiator.keys().send, initiator.keys().receive);
  EXPECT_EQ(initiator.expected_bytes(), 0u);
}

TEST(handshake, a_wrong_swarm_key_or_none_is_refused_at_the_first_message) {
  auto a = peer_key::generate(), b = peer_key::generate();
  for (auto other : {admission_policy::of_swarm(key_of(8)),
                     admission_policy::of_swarm(std::nullopt)}) {
    handshake initiator(handshake::role::initiator, a, other);
    handshake responder(handshake::role::responder, b,
                        admission_policy::of_swarm(key_of(7)));
    auto result = run(initiator, responder);
    EXPECT_EQ(result.responder_failure, handshake_failure::wrong_swarm);
    EXPECT_FALSE(result.both_done);
  }
}

TEST(handshake, the_allowlist_is_checked_on_both_sides) {
  auto a = peer_key::generate(), b = peer_key::generate(), c = peer_key::generate();
  auto only_c = admission_policy::of_swarm(std::nullopt, {c.public_part()});
  {
    handshake initiator(handshake::role::initiator, a, admission_policy::of_swarm({}));
    handshake responder(handshake::role::responder, b, only_c);
    EXPECT_EQ(run(initiator, responder).responder_failure, handshake_failure::not_allowed);
  }
  {
    handshake initiator(handshake::role::initiator, a, only_c);
    handshake responder(handshake::role::responder, b, admission_policy::of_swarm({}));
    EXPECT_EQ(run(initiator, responder).initiator_failure, handshake_failure::not_allowed);
  }
  auto both = admission_policy::of_swarm(std::nullopt, {a.public_part(), b.public_part()});
  handshake initiator(handshake::role::initiator, a, both);
  handshake responder(handshake::role::responder, b, both);
  EXPECT_TRUE(run(initiator, responder).both_done);
}

TEST(handshake, every_tampered_byte_fails_the_exchange) {
  auto a = peer_key::generate(), b = peer_key::generate();
  auto policy = admission_policy::of_swarm(key_of(1));
  const size_t sizes[] = {handshake::hello_size, handshake::reply_size, handshake::finish_size};
  for (int message = 0; message < 3; ++message)
    for (size_t at = 0; at < sizes[message]; at += 3) {
      handshake initiator(handshake::role::initiator, a, policy);
      handshake responder(handshake::role::responder, b, policy);
      auto result = run(initiator, responder, [&](int index, std::vector<uint8_t>& bytes) {
        if (index == message)
          bytes[at] ^= 0x20;
      });
      EXPECT_FALSE(result.both_done) << "message " << message << " byte " << at;
      EXPECT_TRUE(result.initiator_failure || result.responder_failure);
    }
}

TEST(handshake, a_recorded_finish_replayed_against_a_new_exchange_fails) {
  auto a = peer_key::generate(), b = peer_key::generate(), mallory = peer_key::generate();
  auto policy = admission_policy::of_swarm(key_of(3));
  handshake initiator(handshake::role::initiator, a, policy);
  handshake responder(handshake::role::responder, b, policy);
  std::vector<std::vector<uint8_t>> recorded(3);
  ASSERT_TRUE(run(initiator, responder, [&](int i, std::vector<uint8_t>& m) { recorded[i] = m; })
                .both_done);
  // Replaying a's hello and finish: b's fresh ephemeral key makes the old finish worthless.
  handshake fresh(handshake::role::responder, b, policy);
  ASSERT_FALSE(fresh.receive(recorded[0]).failure);
  EXPECT_EQ(fresh.receive(recorded[2]).failure, handshake_failure::wrong_swarm);
  // Someone who knows no admission key cannot even begin.
  handshake outsider(handshake::role::initiator, mallory, admission_policy::of_swarm({}));
  handshake target(handshake::role::responder, b, policy);
  EXPECT_EQ(target.receive(outsider.hello()).failure, handshake_failure::wrong_swarm);
}

TEST(handshake, garbage_and_wrong_sizes_are_refused) {
  auto b = peer_key::generate();
  auto policy = admission_policy::of_swarm(key_of(3));
  handshake responder(handshake::role::responder, b, policy);
  std::vector<uint8_t> http(handshake::hello_size, 'G');
  EXPECT_EQ(responder.receive(http).failure, handshake_failure::bad_version);
  EXPECT_EQ(responder.expected_bytes(), 0u);
  handshake other(handshake::role::responder, b, policy);
  EXPECT_EQ(other.receive(std::vector<uint8_t>(5)).failure, handshake_failure::unexpected);
}

TEST(sealed_frames, round_trip_in_any_split_and_refuse_tampering_and_oversized_lengths) {
  auto k = key_of(9);
  frame_sealer sealer(k);
  std::vector<uint8_t> wire;
  std::vector<uint8_t> message(200000);
  for (size_t i = 0; i < message.size(); ++i)
    message[i] = static_cast<uint8_t>(i * 7);
  sealer.seal(message, wire);
  sealer.seal(std::vector<uint8_t>{1, 2, 3}, wire);
  EXPECT_GT(wire.size(), message.size() + 3);
  for (size_t split : {size_t{1}, size_t{7}, size_t{4096}, wire.size()}) {
    frame_opener opener(k);
    std::vector<uint8_t> out;
    for (size_t at = 0; at < wire.size(); at += split)
      ASSERT_FALSE(opener.open(std::span(wire).subspan(at, std::min(split, wire.size() - at)),
                               out));
    ASSERT_EQ(out.size(), message.size() + 3);
    EXPECT_TRUE(std::equal(message.begin(), message.end(), out.begin()));
    EXPECT_EQ(opener.buffered(), 0u);
  }
  for (size_t at : {size_t{0}, size_t{3}, size_t{10}, wire.size() - 1}) {
    auto bad = wire;
    bad[at] ^= 1;
    frame_opener opener(k);
    std::vector<uint8_t> out;
    EXPECT_TRUE(opener.open(bad, out).has_value()) << at;
  }
  // A length above the limit is refused from its 4-byte header alone.
  frame_opener opener(k);
  std::vector<uint8_t> out;
  std::vector<uint8_t> huge{0xff, 0xff, 0xff, 0xf0};
  EXPECT_EQ(opener.open(huge, out), frame_error::too_large);
  EXPECT_EQ(opener.buffered(), 0u);
  // The wrong key is a forgery; so is a frame replayed out of its place.
  frame_opener stranger(key_of(10));
  EXPECT_EQ(stranger.open(wire, out), frame_error::forged);
  frame_sealer one(k);
  std::vector<uint8_t> first;
  one.seal(std::vector<uint8_t>{42}, first);
  frame_opener twice(k);
  EXPECT_FALSE(twice.open(first, out));
  EXPECT_EQ(twice.open(first, out), frame_error::forged);
}

} // namespace
} // namespace ddactor
