// The peer's activity for /healthz; see peer_health.hpp.
#include "monitoring/peer_health.hpp"

namespace ddactor {

std::string to_string(peer_health::activity a) {
  switch (a) {
    case peer_health::activity::starting: return "starting";
    case peer_health::activity::waiting_for_peers: return "waiting_for_peers";
    case peer_health::activity::training: return "training";
    case peer_health::activity::averaging: return "averaging";
    case peer_health::activity::downloading_state: return "downloading_state";
    case peer_health::activity::stopping: return "stopping";
    case peer_health::activity::finished: return "finished";
    case peer_health::activity::failing: return "failing";
  }
  return "unknown";
}

void peer_health::set(activity now, std::string detail) {
  std::lock_guard<std::mutex> lock(mutex_);
  activity_ = now;
  detail_ = std::move(detail);
}

peer_health::activity peer_health::current() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return activity_;
}

void peer_health::set_problem(const std::string& name, std::string detail) {
  std::lock_guard<std::mutex> lock(mutex_);
  problems_[name] = std::move(detail);
}

void peer_health::clear_problem(const std::string& name) {
  std::lock_guard<std::mutex> lock(mutex_);
  problems_.erase(name);
}

health_report peer_health::report() const {
  std::lock_guard<std::mutex> lock(mutex_);
  health_report out{activity_ != activity::failing && problems_.empty(), to_string(activity_),
                    detail_};
  for (const auto& [name, text] : problems_)
    out.detail += (out.detail.empty() ? "" : "; ") + name + ": " + text;
  return out;
}

peer_health& peer_health::global() {
  static peer_health instance;
  return instance;
}

} // namespace ddactor
