// Signed hellos; see hello_proof.hpp.
#include "runtime/secure/hello_proof.hpp"

#include "runtime/secure/signed_claim.hpp"

namespace ddactor {

namespace {

// Every field a receiver acts on (validate_peer_info refuses 0 bytes in them), and the
// sender's node.
std::string signed_content(const peer_info& info, const std::string& node) {
  auto joined = [](const std::vector<std::string>& list) {
    std::string text;
    for (auto& item : list)
      text += item + " ";
    return text;
  };
  return signed_text("ddactor hello v3",
                     {info.peer_id, std::to_string(info.incarnation), info.swarm_id, info.host,
                      std::to_string(info.port), info.reachable ? "reachable" : "unreachable",
                      joined(info.relays), joined(info.alternates), node});
}

} // namespace

void sign_hello(swarm_member& member, const peer_key& key, const std::string& node) {
  sign_claim(key, signed_content(member.info, node), member.public_key, member.signature);
}

bool hello_proven(const swarm_member& member, const std::string& node) {
  return claim_proven(member.public_key, member.signature, member.info.peer_id,
                      signed_content(member.info, node));
}

} // namespace ddactor
