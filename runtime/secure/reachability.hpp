#pragma once
// Before it joins, a peer asks its initial peers where they see it and whether they can connect
// back (link_gateway::probe), so that network.announce is optional and a peer behind NAT knows
// it must dial out and be reached through relays (network.reachable = "auto"). The initial
// peers that answered are reachable by definition: they become its first relays.

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

namespace ddactor {

class link_gateway;

struct reachability {
  /// The addresses the initial peers saw this peer at that work: each one a dial-back reached,
  /// in the order asked (an IPv4 and an IPv6 address where both were asked); where no dial-back
  /// arrived, the most common answer alone. Empty when none answered.
  std::vector<std::string> observed_hosts;
  /// Whether other peers can connect to this one.
  bool reachable = true;
  /// "host:port" of the initial peers that answered: where an unreachable peer reserves relays.
  std::vector<std::string> relay_candidates;
  /// One line for the log: what was asked and what was learned.
  std::string summary;
};

/// `mode` is network.reachable ("auto", "yes", "no"): "yes" and "no" decide `reachable`, "auto"
/// takes the dial-backs' word (reachable when any arrived, or when no initial peer answered: the
/// first peer of a swarm must be reachable for anyone to join). At most `max_answers` peers are
/// asked successfully; each probe waits up to `timeout`. List an initial peer at its IPv4 and
/// its IPv6 address to learn both of this peer's.
reachability discover_reachability(link_gateway& gateway,
                                   const std::vector<std::string>& initial_peers,
                                   std::string_view mode, std::chrono::milliseconds timeout,
                                   std::size_t max_answers = 3);

} // namespace ddactor
