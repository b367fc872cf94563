#pragma once
// What a peer is doing, for GET /healthz: set by the actors as they change activity, read by the
// HTTP threads. Thread-safe (a mutex; updates happen a few times per step at most).

#include <mutex>
#include <string>

#include "monitoring/metrics_http_server.hpp"

namespace ddactor {

class peer_health {
 public:
  enum class activity : uint8_t {
    starting,
    waiting_for_peers,
    training,
    averaging,
    downloading_state,
    stopping,
    finished,
    failing,
  };

  void set(activity now, std::string detail = {});
  activity current() const;
  /// Healthy unless failing.
  health_report report() const;

  /// The process's peer (one per process).
  static peer_health& global();

 private:
  mutable std::mutex mutex_;
  activity activity_ = activity::starting;
  std::string detail_;
};

std::string to_string(peer_health::activity a);

} // namespace ddactor
