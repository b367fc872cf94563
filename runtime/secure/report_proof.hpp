#pragma once
// Progress reports are claims other peers act on: an epoch past theirs makes them download a
// state, a digest decides which weights a split swarm keeps, and each report is one voice of the
// state quorum (state_quorum.hpp). A report is therefore signed by its author with the Ed25519
// key its peer id derives from (peer_key.hpp), over every field and a sequence number, so that a
// peer cannot speak for another (and count twice in a quorum), and a recorded report cannot be
// replayed once a newer one was seen (progress_tracker keeps the highest sequence per peer).

#include "runtime/secure/peer_key.hpp"
#include "runtime/swarm_messages.hpp"

namespace ddactor {

/// Fills report.public_key and report.signature for its fields (report.sequence included).
void sign_report(progress_report& report, const peer_key& key);

/// Whether `report` carries a 32-byte key whose id is report.peer_id and a valid signature of
/// its fields.
bool report_proven(const progress_report& report);

} // namespace ddactor
