#pragma once
// Misbehaviour, scored per peer key, and the bans it earns. Each offence adds points (a proven
// lie or invalid data: the threshold at once; a lapse that an honest peer may also have, such as
// an audit left unanswered by a peer that just crashed: less); points fade at the rate of one
// threshold per ban time, so only offences that pile up ban. At the threshold the peer is banned
// for the ban time (network.ban_time) and its score starts again from zero. Plain state, no
// clock of its own: the caller passes the time.

#include <chrono>
#include <cstddef>
#include <map>
#include <string>

namespace ddactor {

class misbehaviour_scores {
 public:
  using clock_type = std::chrono::steady_clock;

  /// Points at which a peer is banned.
  static constexpr double threshold = 10;

  explicit misbehaviour_scores(std::chrono::seconds ban_time = std::chrono::seconds(600))
      : ban_time_(ban_time) {}

  /// Adds `points` to `peer_id`'s score. True when this bans it (it was not banned before).
  bool add(const std::string& peer_id, double points, clock_type::time_point now);
  bool banned(const std::string& peer_id, clock_type::time_point now) const;
  /// When `peer_id`'s ban ends (only meaningful while banned()).
  clock_type::time_point banned_until(const std::string& peer_id) const;
  /// Peers banned at `now`.
  std::size_t banned_count(clock_type::time_point now) const;
  /// The score as it stands at `now`, after fading.
  double score(const std::string& peer_id, clock_type::time_point now) const;
  std::chrono::seconds ban_time() const noexcept { return ban_time_; }

 private:
  struct record {
    double points = 0;
    clock_type::time_point scored;  // when `points` was last brought up to date
    clock_type::time_point banned_until{};
  };
  double faded(const record& r, clock_type::time_point now) const;

  std::chrono::seconds ban_time_;
  std::map<std::string, record> records_;
};

} // namespace ddactor
