#pragma once
// What a peer is doing, for GET /healthz: set by the actors as they change activity, read by the
// HTTP threads. Besides the activity, named problems (a checkpoint that cannot be written, say)
// make the peer unhealthy while it goes on working, until the part that raised them clears them.
// Thread-safe (a mutex; updates happen a few times per step at most).

#include <map>
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
  /// Raises (or updates) the problem `name` with a text for humans; clear_problem ends it.
  void set_problem(const std::string& name, std::string detail);
  void clear_problem(const std::string& name);
  /// Healthy unless failing or some problem is raised; the problems' texts follow the detail.
  health_report report() const;

  /// The process's peer (one per process).
  static peer_health& global();

 private:
  mutable std::mutex mutex_;
  activity activity_ = activity::starting;
  std::string detail_;
  std::map<std::string, std::string> problems_;
};

std::string to_string(peer_health::activity a);

} // namespace ddactor
