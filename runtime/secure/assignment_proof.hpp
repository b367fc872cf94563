#pragma once
// A round's assignment is a claim its members act on: who averages with whom, with which weights
// and part shares, under which round id and deadline. The leader signs it with the Ed25519 key
// its peer id derives from (peer_key.hpp), so that a relay between leader and member (a peer
// behind NAT is reached through one) cannot add members, move weight or shrink a deadline, and a
// member checks that the leader it joined signed it. The members' actor handles are not signed
// (they are not bytes); a member only sends to handles it also knows from its own view's peers.

#include "runtime/secure/peer_key.hpp"
#include "runtime/swarm_messages.hpp"

namespace ddactor {

/// Fills assignment.leader_id, public_key and signature for its fields.
void sign_assignment(group_assignment& assignment, const peer_key& key);

/// Whether `assignment` is signed by `leader_id`'s key over all of its fields.
bool assignment_proven(const group_assignment& assignment, const std::string& leader_id);

} // namespace ddactor
