// Backoff and restart budget; see restart_policy.hpp.
#include "runtime/restart_policy.hpp"

#include <algorithm>

namespace ddactor {

std::optional<std::chrono::milliseconds> restart_policy::on_failure(clock::time_point now,
                                                                   const std::string& reason) {
  repeated_ = !reason.empty() && total_ > 0 && reason == last_reason_;
  last_reason_ = reason;
  if (repeated_)
    return std::nullopt;
  while (!failures_.empty() && now - failures_.front() > options_.window)
    failures_.pop_front();
  if (static_cast<int>(failures_.size()) >= options_.max_restarts)
    return std::nullopt;
  failures_.push_back(now);
  ++total_;
  // 1st failure in the window: base delay; each further one doubles it, up to max_delay.
  auto delay = options_.base_delay;
  for (size_t i = 1; i < failures_.size() && delay < options_.max_delay; ++i)
    delay *= 2;
  return std::min(delay, options_.max_delay);
}

} // namespace ddactor
