#pragma once
// A hello binds a peer id to the key behind it: the sender signs what it claims (id,
// incarnation, swarm, address) together with its CAF node id, with the Ed25519 key its id is
// derived from (peer_key.hpp). A receiver that requires proofs admits the hello only when the
// id is the key's id, the signature holds, and the node named is the one the hello came from,
// so an admitted peer can neither claim another peer's id (to displace it from the views) nor
// replay another peer's hello from its own node.

#include <string>

#include "runtime/secure/peer_key.hpp"
#include "runtime/swarm_messages.hpp"

namespace ddactor {

/// Fills member.public_key and member.signature for member.info, sent from `node`.
void sign_hello(swarm_member& member, const peer_key& key, const std::string& node);

/// Whether `member` proves its id: a 32-byte key whose id is member.info.peer_id and a valid
/// signature of its info sent from `node`.
bool hello_proven(const swarm_member& member, const std::string& node);

} // namespace ddactor
