// Signed round assignments; see assignment_proof.hpp.
#include "runtime/secure/assignment_proof.hpp"

#include <bit>
#include <string>

#include "runtime/peer_identity.hpp"
#include "runtime/secure/signed_claim.hpp"

namespace ddactor {

namespace {

// Every field a member acts on, the members in their order (an index is a position), weights by
// their bits so that signing and checking never disagree on a rounding.
std::string signed_content(const group_assignment& a) {
  std::string members;
  for (const auto& m : a.members)
    members += m.peer_id + ":" + std::to_string(std::bit_cast<uint64_t>(m.weight)) + ":" +
               std::to_string(m.part_share) + ";";
  return signed_text("ddactor assignment v1",
                     {a.leader_id, std::to_string(a.round_id), std::to_string(a.epoch),
                      std::to_string(a.length), std::to_string(a.deadline_ms), members});
}

} // namespace

void sign_assignment(group_assignment& assignment, const peer_key& key) {
  assignment.leader_id = peer_id_of(key.public_part());
  sign_claim(key, signed_content(assignment), assignment.public_key, assignment.signature);
}

bool assignment_proven(const group_assignment& assignment, const std::string& leader_id) {
  // Ids are hex: the ':' and ';' that join the members cannot occur in one.
  for (const auto& m : assignment.members)
    if (!is_valid_peer_id(m.peer_id))
      return false;
  return assignment.leader_id == leader_id &&
         claim_proven(assignment.public_key, assignment.signature, leader_id,
                      signed_content(assignment));
}

} // namespace ddactor
