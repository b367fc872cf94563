#pragma once
// How many messages of one kind a sender may have handled, as token buckets: `rate` per second
// with bursts of `burst`. Membership limits hellos and gossip per sending node with it, so an
// admitted peer flooding them (each hello costs a signature check) cannot keep the membership
// actor from its own work. Senders are forgotten when `max_senders` are known (the longest
// silent first), so many senders cost bounded memory.

#include <chrono>
#include <cstddef>
#include <map>
#include <string>

namespace ddactor {

class sender_rate_limit {
 public:
  using clock = std::chrono::steady_clock;

  sender_rate_limit(double rate, double burst, std::size_t max_senders = 4096);

  /// Whether one more message from `sender` may be handled at `now` (it takes a token).
  bool allow(const std::string& sender, clock::time_point now);

  std::size_t senders() const noexcept { return buckets_.size(); }

 private:
  struct bucket {
    double tokens = 0;
    clock::time_point refilled;
  };
  double rate_;
  double burst_;
  std::size_t max_senders_;
  std::map<std::string, bucket> buckets_;
};

} // namespace ddactor
