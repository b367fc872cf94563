#pragma once
// The swarm view of one peer, as plain data and rules, without actors: who is a member (with the
// actor handles learned from that peer directly), when each was last heard from, who is
// suspected, which removed peers are remembered as tombstones, and which peers were learned from
// gossip and wait to be dialed. The membership actor (actors/membership.hpp) owns one and feeds it
// messages and the current time; the rules live here so that they can be tested with a fake
// clock.
//
// Also the validation of everything membership receives from the network (validate_*), with
// one `rejection` code per reason, which becomes the label of a metric.
//
// Rules:
//   - A peer enters the view only through a direct exchange with it (admit); gossip only makes
//     it a candidate to dial (learn). So actor handles are never taken second-hand.
//   - Per peer id, the highest incarnation wins: a higher one replaces the entry (a restarted
//     peer), a lower one is stale and ignored.
//   - A removed peer leaves a tombstone (id, incarnation) for `tombstone_ttl`: gossip naming
//     that incarnation or an older one does not make it a candidate again. Direct contact from
//     the peer itself (a hello) overrides the tombstone: it is evidently alive.
//   - Silence longer than suspect_after marks a member suspected; longer than remove_after
//     removes it. Hearing from it again clears the suspicion.
//
// Not thread-safe: one owner (the membership actor).

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/swarm_messages.hpp"

namespace ddactor {

/// Why a membership message from the network was rejected. A small closed set, because each is a
/// label value of ddactor_swarm_rejected_messages_total.
enum class rejection : uint8_t {
  bad_peer_id,       ///< not 32 lowercase hex characters
  bad_host,          ///< empty, too long, or characters no host name or address has
  bad_port,          ///< port 0
  bad_swarm_id,      ///< too long or not printable
  too_many_peers,    ///< a known list longer than max_known_peers
  missing_handle,    ///< a hello without the sender's membership handle
  own_id,            ///< another process claims this peer's id
  stale_incarnation, ///< older than the incarnation already known for that id
  wrong_sender,      ///< a message about a peer that did not come from that peer's node
  bad_signature,     ///< a hello that does not prove its id (runtime/secure/hello_proof.hpp)
  rate_limited,      ///< more hellos and gossip from one node than membership handles
};

std::string_view to_string(rejection reason) noexcept;

inline constexpr std::size_t max_host_length = 253;
inline constexpr std::size_t max_swarm_id_length = 64;
inline constexpr std::size_t max_known_peers = 4096;
inline constexpr std::size_t max_relays_per_peer = 4;
inline constexpr std::size_t max_alternate_addresses = 4;

/// nullopt when `info` may enter a view: a valid peer id, a plausible host (1..253 characters of
/// letters, digits, '.', '-', '_', ':', '[', ']', '%'), a port other than 0, a swarm id of at
/// most 64 printable ASCII characters, at most max_relays_per_peer relays and
/// max_alternate_addresses alternates, each a plausible "host:port" (bad_host otherwise).
std::optional<rejection> validate_peer_info(const peer_info& info) noexcept;

/// validate_peer_info for each entry, and at most max_known_peers entries.
std::optional<rejection> validate_peer_list(std::span<const peer_info> peers) noexcept;

/// Whether every handle in `member` lives on `node` (the node its hello came from): handles are
/// only taken from the peer itself (wrong_sender otherwise).
bool handles_live_on(const swarm_member& member, const caf::node_id& node);

/// Why a member left the view; the label of ddactor_swarm_peers_left_total.
enum class removal_reason : uint8_t {
  left,      ///< it said goodbye (clean shutdown)
  died,      ///< its actor or its connection went down
  timeout,   ///< silent for longer than remove_after
  restarted, ///< a higher incarnation of the same id replaced it
};

std::string_view to_string(removal_reason reason) noexcept;

/// Round trips above this count as this much in the liveness thresholds (a path slower than
/// that is broken, not far).
inline constexpr std::chrono::seconds max_counted_round_trip{5};
inline constexpr std::chrono::seconds max_counted_loss_stall{5};

struct swarm_view_timing {
  std::chrono::milliseconds suspect_after{3000};
  std::chrono::milliseconds remove_after{8000};
  std::chrono::milliseconds tombstone_ttl{30000};
};

class swarm_view {
 public:
  using clock = std::chrono::steady_clock;
  using time_point = clock::time_point;

  enum class admission {
    joined,    ///< new in the view
    replaced,  ///< a higher incarnation replaced an entry (see admit_result::previous)
    refreshed, ///< already a member with this incarnation; handles updated, marked alive
    stale,     ///< an older incarnation than known (or this peer's own id): ignored
  };

  struct admit_result {
    admission outcome = admission::stale;
    /// The entry that was replaced, for `replaced` (its handles are to be unmonitored).
    std::optional<swarm_member> previous;
  };

  struct liveness_report {
    /// Members that just became suspected (each is reported once per silence).
    std::vector<peer_info> suspected;
    /// Members removed for silence (already tombstoned).
    std::vector<swarm_member> timed_out;
  };

  swarm_view(swarm_member self, swarm_view_timing timing);

  const swarm_member& self() const noexcept { return self_; }
  /// Replaces this peer's own entry (its port once bound, its local handles once spawned).
  void set_self(swarm_member self);

  /// A direct exchange with `them` (their hello, or their reply to ours).
  admit_result admit(const swarm_member& them, time_point now);

  /// A message from this member arrived. Returns true if it was suspected (and no longer is).
  /// Unknown ids and other incarnations are ignored (returns false).
  bool heard_from(std::string_view peer_id, uint64_t incarnation, time_point now);

  /// Removes a member and tombstones its incarnation; nullopt if it was not a member.
  std::optional<swarm_member> remove(std::string_view peer_id, time_point now);

  /// Peers named by gossip or a hello reply. Returns those that became candidates now: not this
  /// peer, not a member with that incarnation or a newer one, not tombstoned, not already a
  /// candidate with that incarnation or a newer one.
  std::vector<peer_info> learn(std::span<const peer_info> known, time_point now);

  /// Drops a candidate (its dial failed, or it was admitted under another address).
  void forget_candidate(std::string_view peer_id);
  /// Drops every candidate with this address (host:port or an alternate).
  void forget_candidates_at(std::string_view address);
  const std::map<std::string, peer_info, std::less<>>& candidates() const noexcept {
    return candidates_;
  }

  /// Whether this peer knows of `peer_id` through its current group: a member or a candidate.
  bool heard_of(std::string_view peer_id) const;

  /// Split detection, evaluated before admitting `them` after a hello exchange: if `them` was not
  /// known to this peer's group, this peer already had another member, and their known list
  /// brings at least one more peer unknown here, two groups that did not know each other are
  /// being joined. Returns how many peers the merge brings (them and the unknown ones), else
  /// nullopt.
  std::optional<std::size_t> split_merge_size(const peer_info& them,
                                              std::span<const peer_info> their_known) const;

  /// What this member's link excuses: its measured round trip (at most max_counted_round_trip
  /// counts) and how long lost packets alone can silence it (link_gateway::activity::loss_stall,
  /// at most max_counted_loss_stall). Silence is suspected after suspect_after + 2 x round trip
  /// + loss stall, and removed after remove_after + the same.
  void set_link_timing(std::string_view peer_id, std::chrono::microseconds round_trip,
                       std::chrono::microseconds loss_stall);

  /// Suspects and removes silent members, and forgets expired tombstones.
  liveness_report check_liveness(time_point now);

  const swarm_member* find(std::string_view peer_id) const;
  /// Whether a tombstone for this id covers this incarnation.
  bool is_tombstoned(std::string_view peer_id, uint64_t incarnation, time_point now) const;
  bool is_suspected(std::string_view peer_id) const;
  /// When a message from this member last arrived; nullopt if it is not a member.
  std::optional<time_point> last_heard(std::string_view peer_id) const;

  /// Every member including this peer, sorted by peer id (the same order on every peer).
  std::vector<swarm_member> members() const;
  /// Every other member's info, sorted by peer id: the known list of gossip and hello replies.
  std::vector<peer_info> other_infos() const;
  /// Members including this peer.
  std::size_t size() const noexcept { return members_.size() + 1; }
  /// Members other than this peer.
  std::size_t others() const noexcept { return members_.size(); }

 private:
  struct member_entry {
    swarm_member member;
    time_point last_heard;
    bool suspected = false;
    std::chrono::microseconds round_trip{0};
    std::chrono::microseconds loss_stall{0};
  };
  struct tombstone {
    uint64_t incarnation = 0;
    time_point expires;
  };

  void bury(const peer_info& info, time_point now);

  swarm_member self_;
  swarm_view_timing timing_;
  std::map<std::string, member_entry, std::less<>> members_;
  std::map<std::string, tombstone, std::less<>> tombstones_;
  std::map<std::string, peer_info, std::less<>> candidates_;
};

} // namespace ddactor
