#pragma once
// When a supervisor may restart a failed child, and after how long: exponential backoff with a
// restart budget per time window (as in Erlang/OTP and Ray's actor restarts). A child that keeps
// failing faster than the budget allows is given up on, so a broken configuration ends the peer
// with an error instead of spinning forever. A failure that repeats itself word for word right
// after a restart is deterministic (a model too large for memory, a value that overflows): a
// second restart would fail the same way, so there is none.
//
// Not thread-safe: owned by one supervising actor.

#include <chrono>
#include <deque>
#include <optional>
#include <string>

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

  /// Records a failure at `now` for `reason`; returns the delay before the restart, or nothing
  /// when the budget is spent or the failure repeats the previous one word for word.
  std::optional<std::chrono::milliseconds> on_failure(clock::time_point now,
                                                      const std::string& reason = {});
  /// The last failure repeated the one before it (why on_failure gave up, if it did).
  bool repeated() const { return repeated_; }

  /// Restarts within the current window.
  int recent_restarts() const { return static_cast<int>(failures_.size()); }
  int total_restarts() const { return total_; }

 private:
  options options_;
  std::deque<clock::time_point> failures_;
  int total_ = 0;
  std::string last_reason_;
  bool repeated_ = false;
};

} // namespace ddactor
