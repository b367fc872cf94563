#pragma once
// Where a peer tells others to dial it, in order: the first becomes its peer_info host:port, the
// others its alternates (tried when the first fails: an IPv6 address beside an IPv4 one, a LAN
// address beside a router's). network.announce when set; else the addresses its initial peers
// saw it at and could connect back to; else its listen addresses, with a wildcard one replaced
// by this machine's address toward the internet in each family it covers.

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace ddactor {

struct announced_addresses {
  enum class origin {
    configured,  ///< network.announce
    observed,    ///< the initial peers' answers (runtime/secure/reachability.hpp)
    listened,    ///< network.listen's own addresses and guesses for its wildcards
  };
  /// host and port; a port of 0 stands for the port listened on once bound.
  std::vector<std::pair<std::string, uint16_t>> addresses;
  origin from = origin::listened;
  /// Some came from guess_announce_hosts (a wildcard listen address).
  bool guessed = false;
};

/// `announce` and `listen` are network.announce and network.listen (checked by the config);
/// `observed_hosts` what discovery found; `guess(ipv4, ipv6)` guesses this machine's addresses
/// (local_addresses.hpp's guess_announce_hosts). Families the observed hosts miss are filled
/// from the listen addresses (a peer asked over IPv4 still announces its IPv6 address). Empty
/// only when nothing can be said (a wildcard and no guess).
announced_addresses announce_addresses(
  const std::vector<std::string>& announce, const std::vector<std::string>& listen,
  const std::vector<std::string>& observed_hosts,
  const std::function<std::vector<std::string>(bool ipv4, bool ipv6)>& guess);

} // namespace ddactor
