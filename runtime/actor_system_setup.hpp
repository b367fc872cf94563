#pragma once
// The one actor_system_config of ddactor: every binary and every test that starts an actor system
// uses it, so that all nodes agree on message types, error rendering and heartbeats.

#include <chrono>

#include "caf/actor_system_config.hpp"

namespace ddactor {

struct network_timing {
  /// BASP heartbeats: without them a silently cut link is never noticed.
  std::chrono::milliseconds heartbeat_interval{1000};
  /// A connection that shows no sign of life for this long is closed and its actors reported down.
  std::chrono::milliseconds connection_timeout{5000};
};

/// CAF's connection timeout counts whole messages, and one all-reduce or state chunk over a slow
/// home upload takes longer to arrive than any heartbeat interval. Behind a link gateway, which
/// closes links on which no byte arrives (link_gateway_options::idle_timeout), CAF's own timeout
/// is raised to this: a whole message may take that long.
inline constexpr std::chrono::milliseconds caf_timeout_behind_gateway{std::chrono::minutes(10)};

class ddactor_system_config : public caf::actor_system_config {
 public:
  explicit ddactor_system_config(network_timing timing = {}, bool with_network = true);
};

} // namespace ddactor
