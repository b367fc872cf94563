#pragma once
// Who leads the matchmaking of an epoch, as plain rules without actors (the averager applies
// them; tests/runtime/matchmaking_rules_test.cpp plays the cases that once split a swarm).
//
// Every peer of the swarm sees the others' reported epochs a moment late, and a peer that just
// joined is not heard from at all yet. The rules must still lead every member of an epoch to
// one leader:
//
//   - Peers are asked in the epoch's leader order: by a hash of the epoch and the peer's id, so
//     the first candidate changes from epoch to epoch and no id leads them all (ids derive from
//     keys, and a key with a low id is cheap to grind; with this order a ground key leads about
//     one epoch in N, like any peer).
//   - A member asks the peers it may, first in that order first: a peer it has not heard from may
//     be at the epoch (at the start of a swarm, reports are still on their way), so it is asked.
//   - A peer refuses to lead an epoch it is not at, and one it reached by downloading the state
//     from further back than the epoch before (its report of that epoch says so, may_lead =
//     false: members that chose before its report arrived did not count it). The member then
//     asks the next. The refusal holds for the reported epoch only: a peer reported at the epoch
//     before counts as at this one, for every member alike, and leads it once there (with
//     overlapping rounds a member asks before the peer's next report arrives; refusing then
//     and leading a moment later split the epoch into two groups of one).
//   - A member whose own peer already leads an open round of the epoch joins it: others chose it,
//     and it waits for this member.
//   - A peer asked to lead sends the member on only to a peer before it in the order that is
//     known to be at the epoch and leading; a peer not heard from yet is no reason to refuse,
//     or a joiner not yet heard from (which refuses itself) would leave the epoch without any
//     leader.
//
// The leader waits for every peer at the epoch and every peer not heard from yet (it may be at
// it), until matchmaking_time passes.

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

namespace ddactor {

/// What one peer knows of the others' progress (its own report included, once sent).
struct epoch_reports {
  /// Reported epoch per peer id.
  std::map<std::string, int64_t> epochs;
  /// Peers that do not lead the epoch they are at (they reached it by a download).
  std::set<std::string> not_leading;
};

/// Known to be at `epoch`: it reported that epoch or the one before (reports lag a little).
bool reported_at(const epoch_reports& reports, const std::string& peer_id, int64_t epoch);

/// Whether the leader of `epoch` waits for this peer: at the epoch, or not heard from yet.
bool awaited_in(const epoch_reports& reports, const std::string& peer_id, int64_t epoch);

/// Whether this peer reported `epoch` itself as one it does not lead (reached by a download).
bool declines_to_lead(const epoch_reports& reports, const std::string& peer_id, int64_t epoch);

/// Whether a member may ask this peer to lead `epoch` (a peer asks itself the same way).
bool leader_candidate(const epoch_reports& reports, const std::string& peer_id, int64_t epoch);

/// `ids` in the order in which they are asked to lead `epoch`: by a hash of the epoch and the id
/// (ties, which need a 64-bit collision, by id).
std::vector<std::string> leader_order(std::vector<std::string> ids, int64_t epoch);

/// Whether a peer asked to lead `epoch` sends the member on to this peer (before it in the
/// epoch's leader order) instead.
bool leads_instead(const epoch_reports& reports, const std::string& peer_id, int64_t epoch);

/// Whether another peer reports an epoch past `epoch`: the swarm averaged it already.
bool swarm_past(const epoch_reports& reports, const std::string& self_id, int64_t epoch);

/// The peer a member asks to lead `epoch` next: the first of `member_ids` (this peer included)
/// in the epoch's leader order that is a leader candidate and not among `failed` (leaders that
/// refused or failed this member); empty when none is left. `leading_here`: the member's own
/// peer id when that peer leads an open round of `epoch` (then asked first), else empty.
std::string next_leader(const epoch_reports& reports, const std::vector<std::string>& member_ids,
                        int64_t epoch, const std::set<std::string>& failed,
                        const std::string& leading_here = {});

} // namespace ddactor
