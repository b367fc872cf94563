// Signed round assignments: every field a member acts on is covered, only the leader a member
// joined can sign for it, and member ids cannot be re-cut between fields.
#include "runtime/secure/assignment_proof.hpp"

#include <gtest/gtest.h>

#include <functional>
#include <vector>

namespace ddactor {
namespace {

std::string id_of(const peer_key& key) {
  return peer_id_of(key.public_part());
}

group_assignment assignment_of(const peer_key& a, const peer_key& b) {
  group_assignment x;
  x.round_id = 0x1234abcd;
  x.epoch = 17;
  x.length = 1000;
  x.deadline_ms = 60000;
  x.members = {{id_of(a), {}, 64.0, 3}, {id_of(b), {}, 32.5, 1}};
  return x;
}

TEST(assignment_proof, every_field_is_signed) {
  auto leader = peer_key::generate();
  auto other = peer_key::generate();
  auto x = assignment_of(leader, other);
  EXPECT_FALSE(assignment_proven(x, id_of(leader)));  // no proof at all
  sign_assignment(x, leader);
  EXPECT_EQ(x.leader_id, id_of(leader));
  EXPECT_TRUE(assignment_proven(x, id_of(leader)));
  for (auto change : std::vector<std::function<void(group_assignment&)>>{
         [](group_assignment& a) { a.round_id += 1; },
         [](group_assignment& a) { a.epoch += 1; },
         [](group_assignment& a) { a.length -= 1; },
         [](group_assignment& a) { a.deadline_ms = 1; },
         [](group_assignment& a) { a.members[1].weight = 32.500000001; },
         [](group_assignment& a) { a.members[0].part_share = 0; },
         [](group_assignment& a) { std::swap(a.members[0], a.members[1]); },
         [](group_assignment& a) { a.members.pop_back(); },
         [](group_assignment& a) { a.members.push_back(a.members[0]); },
         [](group_assignment& a) { a.signature[5] ^= 1; },
         [](group_assignment& a) { a.public_key.pop_back(); }}) {
    auto changed = x;
    change(changed);
    EXPECT_FALSE(assignment_proven(changed, id_of(leader)));
  }
}

TEST(assignment_proof, only_the_joined_leader_signs_for_itself) {
  auto leader = peer_key::generate();
  auto relay = peer_key::generate();
  auto x = assignment_of(leader, relay);
  sign_assignment(x, relay);  // a relay's own valid signature
  EXPECT_TRUE(assignment_proven(x, id_of(relay)));
  EXPECT_FALSE(assignment_proven(x, id_of(leader)));
  x.leader_id = id_of(leader);  // claiming the leader's id with the relay's key
  EXPECT_FALSE(assignment_proven(x, id_of(leader)));
}

TEST(assignment_proof, member_ids_must_be_peer_ids) {
  auto leader = peer_key::generate();
  auto x = assignment_of(leader, leader);
  x.members[0].peer_id += ":1;";
  sign_assignment(x, leader);
  EXPECT_FALSE(assignment_proven(x, id_of(leader)));
}

} // namespace
} // namespace ddactor
