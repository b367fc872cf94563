// Signed hellos; see hello_proof.hpp.
#include "runtime/secure/hello_proof.hpp"

#include <algorithm>

namespace ddactor {

namespace {

// What is signed: every field a receiver acts on, each ended by a 0 byte (no field holds one:
// validate_peer_info refuses them), and the sender's node.
std::string signed_content(const peer_info& info, const std::string& node) {
  std::string text = "ddactor hello v1";
  for (const std::string& field :
       {info.peer_id, std::to_string(info.incarnation), info.swarm_id, info.host,
        std::to_string(info.port), node}) {
    text.push_back('\0');
    text += field;
  }
  return text;
}

std::span<const uint8_t> bytes_of(const std::string& text) {
  return {reinterpret_cast<const uint8_t*>(text.data()), text.size()};
}

} // namespace

void sign_hello(swarm_member& member, const peer_key& key, const std::string& node) {
  const auto& pk = key.public_part();
  member.public_key.assign(pk.begin(), pk.end());
  auto sig = key.sign(bytes_of(signed_content(member.info, node)));
  member.signature.assign(sig.begin(), sig.end());
}

bool hello_proven(const swarm_member& member, const std::string& node) {
  if (member.public_key.size() != 32 || member.signature.size() != 64)
    return false;
  public_key pk{};
  std::copy(member.public_key.begin(), member.public_key.end(), pk.begin());
  if (peer_id_of(pk) != member.info.peer_id)
    return false;
  signature sig{};
  std::copy(member.signature.begin(), member.signature.end(), sig.begin());
  return verify_signature(pk, bytes_of(signed_content(member.info, node)), sig);
}

} // namespace ddactor
