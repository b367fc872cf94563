// Misbehaviour scores and bans; see misbehaviour_scores.hpp.
#include "runtime/secure/misbehaviour_scores.hpp"

#include <algorithm>

namespace ddactor {

double misbehaviour_scores::faded(const record& r, clock_type::time_point now) const {
  if (now <= r.scored || ban_time_.count() <= 0)
    return r.points;
  const double elapsed = std::chrono::duration<double>(now - r.scored).count();
  const double rate = threshold / std::chrono::duration<double>(ban_time_).count();
  return std::max(0.0, r.points - rate * elapsed);
}

bool misbehaviour_scores::add(const std::string& peer_id, double points,
                              clock_type::time_point now) {
  auto& r = records_[peer_id];
  if (now < r.banned_until)
    return false;  // already banned: the ban runs its course
  r.points = faded(r, now) + std::max(0.0, points);
  r.scored = now;
  if (r.points < threshold)
    return false;
  r.points = 0;
  r.banned_until = now + ban_time_;
  return true;
}

bool misbehaviour_scores::banned(const std::string& peer_id, clock_type::time_point now) const {
  auto it = records_.find(peer_id);
  return it != records_.end() && now < it->second.banned_until;
}

misbehaviour_scores::clock_type::time_point misbehaviour_scores::banned_until(
  const std::string& peer_id) const {
  auto it = records_.find(peer_id);
  return it == records_.end() ? clock_type::time_point{} : it->second.banned_until;
}

std::size_t misbehaviour_scores::banned_count(clock_type::time_point now) const {
  return static_cast<std::size_t>(std::count_if(
    records_.begin(), records_.end(), [&](const auto& entry) {
      return now < entry.second.banned_until;
    }));
}

double misbehaviour_scores::score(const std::string& peer_id, clock_type::time_point now) const {
  auto it = records_.find(peer_id);
  return it == records_.end() ? 0.0 : faded(it->second, now);
}

} // namespace ddactor
