#pragma once
// The addresses peers are given and announce: "host:port", or "[v6]:port" for IPv6.

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace ddactor {

/// Splits "host:port" or "[v6]:port"; nullopt if malformed (no port, port 0 or > 65535, empty
/// host).
std::optional<std::pair<std::string, uint16_t>> parse_peer_address(const std::string& address);

/// A listen or announce address as the config checked it ("host:port", "[v6]:port"; port 0 allowed:
/// any free port, or the one listened on). Throws std::invalid_argument when it is not one.
std::pair<std::string, uint16_t> split_listen_address(const std::string& address);

/// "host:port", or "[host]:port" when the host is an IPv6 address: what parse_peer_address reads.
std::string format_peer_address(const std::string& host, uint16_t port);

/// "a, b and c" for logs.
std::string describe_addresses(const std::vector<std::string>& addresses);

} // namespace ddactor
