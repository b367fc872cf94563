#pragma once
// swarm_status: the swarm as one peer sees it right now, for `ddactor status` and the status page
// (GET /status.json and GET / on monitoring.listen). Grafana keeps the history; this is the
// present, readable without installing anything.
//
// Three parts:
//   swarm_status        plain data: this peer, every peer in its view, the last rounds
//   its renderings      JSON (the page's and `status --json`'s format, parsed back by the CLI)
//                       and aligned text tables for a terminal
//   swarm_status_board  where the actors that know each fact write it, and readers take a
//                       snapshot:
//                         membership  this peer's id, swarm and address; the members of its view
//                                     with their announced address, suspicion and when each was
//                                     last heard from
//                         progress    each peer's reported epoch and samples/s, and when
//                         averager    the outcome of each round this peer took part in
//
// What a peer cannot know is said to be unknown rather than guessed: reachability is "reachable"
// for members it holds a direct connection to and "unknown" for itself; a round role is known
// only for the peers of the last group this peer was in.
//
// A status may come from another node (the CLI asks a remote peer): the parser checks every
// field's type and bounds the sizes, and the text rendering replaces control characters, so a
// hostile answer cannot forge lines on a terminal.

#include "runtime/round_result.hpp"
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace ddactor {

/// Whether other peers can open a connection to a peer.
enum class peer_reachability : uint8_t {
  unknown,     ///< not known (this peer itself: nothing tells it how others fare)
  reachable,   ///< this peer holds a direct connection to it
  unreachable, ///< dialing it failed
};

/// A peer's part in the last round this peer took part in.
enum class round_role : uint8_t {
  unknown, ///< not in this peer's last group, or no round yet
  leader,  ///< matched the group (answered the joins)
  member,  ///< averaged in the group
  alone,   ///< found no partner and stepped alone (this peer only)
};

std::string_view to_string(peer_reachability value) noexcept;
std::string_view to_string(round_role value) noexcept;

/// One peer of the view (this one included).
struct peer_status {
  /// 32 hex characters.
  std::string peer_id;
  /// The address other peers dial (network.announce, else the listen address); may be empty
  /// before this peer has bound its port.
  std::string address;
  std::string swarm_id;
  bool is_self = false;
  /// Missed heartbeats for longer than network.suspect_after.
  bool suspected = false;
  /// From its latest progress report; none before the first one.
  std::optional<int64_t> epoch;
  std::optional<double> samples_per_second;
  round_role role = round_role::unknown;
  /// Seconds since a message from it arrived; none for this peer itself.
  std::optional<double> last_seen_seconds;
  peer_reachability reachability = peer_reachability::unknown;
};

/// One averaging round of this peer.
struct round_status {
  int64_t epoch = 0;
  /// Peers whose values went into the average (1 when alone).
  int32_t group_size = 1;
  double seconds = 0;
  uint64_t bytes_sent = 0;
  uint64_t bytes_received = 0;
  round_result result = round_result::alone;
  /// The peer that matched the group; empty when alone.
  std::string leader_id;
  /// The group as assigned, sorted by id; empty when alone.
  std::vector<std::string> members;
  /// Why it stepped alone or failed; empty when averaged.
  std::string detail;
  /// Seconds since the round ended.
  double ended_seconds_ago = 0;
};

struct swarm_status {
  /// Empty when the peer is not part of a swarm (network.listen not set).
  std::string peer_id;
  std::string swarm_id;
  std::string address;
  /// What the peer does now: "training", "averaging", "waiting_for_peers", ...
  std::string activity;
  std::string version;
  /// Sorted by peer id, this peer included.
  std::vector<peer_status> peers;
  /// Newest first, at most swarm_status_board::max_rounds.
  std::vector<round_status> rounds;
};

/// A status text could not be read: not JSON, or a field of the wrong type or size.
class swarm_status_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// The JSON document of GET /status.json and `ddactor status --json` (one object; absent facts
/// are null). Invalid UTF-8 in strings is replaced, never thrown on.
std::string render_swarm_status_json(const swarm_status& status);

/// Reads render_swarm_status_json's format back; unknown fields are ignored (a newer peer may
/// add some). Throws swarm_status_error naming the field when the text is not such a document.
swarm_status parse_swarm_status_json(std::string_view text);

/// Aligned text tables for a terminal: a summary line, the peers, the last rounds.
std::string render_swarm_status_text(const swarm_status& status);

/// The board the actors of one peer write to and the status readers take snapshots of.
/// Thread-safe (one mutex, held for a few small copies); shared by pointer through the actors'
/// options.
class swarm_status_board {
 public:
  using clock = std::chrono::steady_clock;

  /// Rounds kept (the newest).
  static constexpr std::size_t max_rounds = 10;

  /// What membership knows of one other member of the view.
  struct member_fact {
    std::string peer_id;
    std::string address;
    std::string swarm_id;
    bool suspected = false;
    /// When membership last heard from it (none: not yet).
    std::optional<clock::time_point> last_heard;
  };

  /// `activity` says what the peer does now (asked at every snapshot, so it must be quick and
  /// thread-safe); none: "unknown".
  explicit swarm_status_board(std::function<std::string()> activity = {});

  /// Membership: this peer.
  void set_self(const std::string& peer_id, const std::string& swarm_id,
                const std::string& address);
  /// Membership: the other members of the view, replacing the previous list. Progress of peers
  /// that left the view is forgotten.
  void set_members(std::vector<member_fact> members);
  /// Progress: a report of `peer_id` (this peer's own too) arrived at `at`.
  void record_progress(const std::string& peer_id, int64_t epoch, double samples_per_second,
                       clock::time_point at);
  /// Averager: a round of this peer ended at `at` (its ended_seconds_ago is not read).
  void record_round(round_status round, clock::time_point at);

  /// Everything known at `now`.
  swarm_status snapshot(clock::time_point now) const;
  swarm_status snapshot() const { return snapshot(clock::now()); }

 private:
  struct progress_fact {
    int64_t epoch = 0;
    double samples_per_second = 0;
    clock::time_point at;
  };
  struct ended_round {
    round_status round;  // ended_seconds_ago is set when a snapshot is taken
    clock::time_point at;
  };

  std::function<std::string()> activity_;
  mutable std::mutex mutex_;
  std::string peer_id_;
  std::string swarm_id_;
  std::string address_;
  std::vector<member_fact> members_;
  std::map<std::string, progress_fact> progress_;
  /// Newest last.
  std::vector<ended_round> rounds_;
};

} // namespace ddactor
