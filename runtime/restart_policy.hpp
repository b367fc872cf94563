#pragma once
// When a supervisor may restart a failed child, and after how long: exponential backoff with a
// restart budget per time window (as in Erlang/OTP and Ray's actor restarts). A child that keeps
// failing faster than the budget allows is given up on, so a broken configuration ends the peer
// with an error instead of spinning forever.
//
// Not thread-safe: owned by one supervising actor.

#include <chrono>
#include <deque>
#include <optional>

namespace ddactor {

class restart_policy {
 public:
  using clock = std::chrono::steady_clock;

  struct options {
    std::chrono::milliseconds base_delay{500};
    std::chrono::milliseconds max_delay{10000};
    /// At most this many restarts within `window`.
    int max_restarts = 5;
    std::chrono::milliseconds window{60000};
  };

  explicit restart_policy(options opts) : options_(opts) {}
  restart_policy() : restart_policy(options{}) {}

  /// Records a failure at `now`; returns the delay before the restart, or nothing when the budget
  /// is spent.
  std::optional<std::chrono::milliseconds> on_failure(clock::time_point now);

  /// Restarts within the current window.
  int recent_restarts() const { return static_cast<int>(failures_.size()); }
  int total_restarts() const { return total_; }

 private:
  options options_;
  std::deque<clock::time_point> failures_;
  int total_ = 0;
};

} // namespace ddactor
