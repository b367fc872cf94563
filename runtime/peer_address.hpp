#pragma once
// The addresses peers are given and announce: "host:port", or "[v6]:port" for IPv6.

#include <cstdint>
#include <optional>
#include <string>
#include <utility>

namespace ddactor {

/// Splits "host:port" or "[v6]:port"; nullopt if malformed (no port, port 0 or > 65535, empty
/// host).
std::optional<std::pair<std::string, uint16_t>> parse_peer_address(const std::string& address);

} // namespace ddactor
