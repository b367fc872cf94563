#pragma once
// The leader's side of matchmaking as a plain state machine: joins in, groups out. The averager
// (actors/averager.cpp) keeps the reply promises and actor handles and starts the timers; the
// swarm simulator drives the very same code. Who may lead is decided by matchmaking_rules.hpp.
//
//   (no round) --join, this peer may lead--> OPEN(epoch) --every awaited peer joined--> groups
//        ^                                        |
//        |                                        +--matchmaking_time passed (close)--> groups
//        +-- a join for a closed epoch is refused (`closed`): the round formed without it
//
// Groups: the joins sorted by peer id, cut into ceil(n / group_size) groups whose sizes differ by
// at most one; each member's part share comes from its reported link rate
// (runtime/allreduce/bandwidth_shares.hpp).

#include <cstddef>
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/matchmaking_rules.hpp"

namespace ddactor {

struct round_request;

/// Whether a join that came over the network may reach the leader at all: a peer id of 32 hex
/// characters, this swarm, an epoch >= 0, a finite weight > 0, a vector length > 0, the
/// requester's averager handle and a finite link rate >= 0. Epoch, shape and leadership are the
/// leader's to judge (on_join).
bool acceptable_round_request(const round_request& request, std::string_view swarm_id) noexcept;

class matchmaking_leader {
public:
  /// A member's join as the leader sees it. `ticket` is the caller's handle for the reply.
  struct join {
    std::string peer_id;
    int64_t epoch = 0;
    double weight = 0;
    uint64_t length = 0;
    double link_rate = 0;  // bytes per second; 0: unknown
    uint64_t ticket = 0;
    bool reachable = true;  // false: reduces no part (behind NAT)
  };
  /// A group the leader formed: its members (sorted by id) and their part shares.
  struct group {
    int64_t epoch = 0;
    std::vector<join> members;
    std::vector<uint64_t> shares;
  };
  enum class verdict : uint8_t {
    accepted,        ///< waits in the epoch's round (see `formed` for groups closed by it)
    closed,          ///< the epoch's groups were formed already
    not_leader,      ///< this peer does not lead the epoch (`detail`: who does, if known)
    shape_mismatch,  ///< its vector length differs from the others'
  };
  struct answer {
    verdict outcome = verdict::accepted;
    std::string detail;
    bool opened = false;        ///< a new round: close it after matchmaking_time
    std::vector<group> formed;  ///< groups this join completed
  };
  /// What the leader knows of the swarm: the peers' reports and the members' ids, sorted (self
  /// included).
  struct swarm_knowledge {
    const epoch_reports& reports;
    const std::vector<std::string>& member_ids;
  };

  matchmaking_leader(std::string self_id, std::size_t group_size);

  answer on_join(join request, swarm_knowledge swarm);
  /// matchmaking_time of the epoch's round passed: its groups, if it is still open.
  std::vector<group> close(int64_t epoch);
  /// Reports or members changed: rounds that now have every awaited peer close.
  std::vector<group> close_full_rounds(swarm_knowledge swarm);

  bool is_closed(int64_t epoch) const { return closed_.count(epoch) > 0; }
  /// Whether this leader holds an open round of `epoch` (joins taken, groups not formed yet).
  bool is_open(int64_t epoch) const { return rounds_.count(epoch) > 0; }
  /// Peers the leader of `epoch` waits for (at least 1: itself).
  static std::size_t participants(swarm_knowledge swarm, int64_t epoch);

private:
  struct round {
    std::vector<join> joined;
    uint64_t length = 0;
  };

  std::string self_id_;
  std::size_t group_size_;
  std::map<int64_t, round> rounds_;
  std::set<int64_t> closed_;
};

} // namespace ddactor
