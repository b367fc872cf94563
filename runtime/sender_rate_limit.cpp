// Token buckets per sender; see sender_rate_limit.hpp.
#include "runtime/sender_rate_limit.hpp"

#include <algorithm>

namespace ddactor {

sender_rate_limit::sender_rate_limit(double rate, double burst, std::size_t max_senders)
  : rate_(std::max(rate, 0.0)), burst_(std::max(burst, 1.0)),
    max_senders_(std::max<std::size_t>(max_senders, 1)) {}

bool sender_rate_limit::allow(const std::string& sender, clock::time_point now) {
  auto it = buckets_.find(sender);
  if (it == buckets_.end()) {
    if (buckets_.size() >= max_senders_)
      buckets_.erase(std::min_element(buckets_.begin(), buckets_.end(),
                                      [](const auto& a, const auto& b) {
                                        return a.second.refilled < b.second.refilled;
                                      }));
    it = buckets_.emplace(sender, bucket{burst_, now}).first;
  }
  auto& b = it->second;
  const double elapsed = std::chrono::duration<double>(now - b.refilled).count();
  if (elapsed > 0) {
    b.tokens = std::min(burst_, b.tokens + elapsed * rate_);
    b.refilled = now;
  }
  if (b.tokens < 1)
    return false;
  b.tokens -= 1;
  return true;
}

} // namespace ddactor
