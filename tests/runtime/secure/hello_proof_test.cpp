#include "runtime/secure/hello_proof.hpp"

#include <gtest/gtest.h>

#include <functional>
#include <vector>

namespace ddactor {
namespace {

swarm_member member_of(const peer_key& key) {
  swarm_member m;
  m.info = peer_info{peer_id_of(key.public_part()), "10.0.0.2", 7000, "swarm", 3, true, {}};
  return m;
}

TEST(hello_proof, a_signed_hello_proves_its_id_from_its_node_only) {
  auto key = peer_key::generate();
  auto m = member_of(key);
  EXPECT_FALSE(hello_proven(m, "node-1"));  // no proof at all
  sign_hello(m, key, "node-1");
  EXPECT_TRUE(hello_proven(m, "node-1"));
  EXPECT_FALSE(hello_proven(m, "node-2"));  // replayed from another node
  for (auto change : std::vector<std::function<void(swarm_member&)>>{
         [](swarm_member& x) { x.info.incarnation += 1; },
         [](swarm_member& x) { x.info.port += 1; },
         [](swarm_member& x) { x.info.host = "10.0.0.3"; },
         [](swarm_member& x) { x.info.swarm_id = "other"; },
         [](swarm_member& x) { x.info.alternates = {"[2001:db8::1]:7000"}; },
         [](swarm_member& x) { x.info.relays = {"10.0.0.9:7000"}; },
         [](swarm_member& x) { x.signature[5] ^= 1; },
         [](swarm_member& x) { x.signature.pop_back(); }}) {
    auto changed = m;
    change(changed);
    EXPECT_FALSE(hello_proven(changed, "node-1"));
  }
}

TEST(hello_proof, a_key_proves_only_its_own_id) {
  auto key = peer_key::generate();
  auto other = peer_key::generate();
  auto m = member_of(other);  // claims other's id
  sign_hello(m, key, "n");    // with its own key
  EXPECT_FALSE(hello_proven(m, "n"));
}

} // namespace
} // namespace ddactor
