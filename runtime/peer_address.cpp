// "host:port" parsing; see peer_address.hpp.
#include "runtime/peer_address.hpp"

#include <algorithm>

namespace ddactor {

std::optional<std::pair<std::string, uint16_t>> parse_peer_address(const std::string& address) {
  auto colon = address.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 >= address.size())
    return std::nullopt;
  auto host = address.substr(0, colon);
  auto port_text = address.substr(colon + 1);
  if (host.front() == '[') {
    if (host.size() < 3 || host.back() != ']')
      return std::nullopt;
    host = host.substr(1, host.size() - 2);
  } else if (host.find(':') != std::string::npos) {
    return std::nullopt; // a bare IPv6 address needs brackets to carry a port
  }
  if (port_text.size() > 5 ||
      !std::all_of(port_text.begin(), port_text.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return std::nullopt;
  auto port = std::stoul(port_text);
  if (port == 0 || port > 65535)
    return std::nullopt;
  return std::make_pair(host, static_cast<uint16_t>(port));
}

} // namespace ddactor
