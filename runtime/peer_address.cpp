// "host:port" parsing; see peer_address.hpp.
#include "runtime/peer_address.hpp"

#include <algorithm>
#include <stdexcept>

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

std::pair<std::string, uint16_t> split_listen_address(const std::string& address) {
  // "host:0" is a listen address but not a peer's: parse it with a port of 1 in its place.
  const auto colon = address.rfind(':');
  const bool any_port = colon != std::string::npos && address.substr(colon + 1) == "0";
  auto parsed = parse_peer_address(any_port ? address.substr(0, colon) + ":1" : address);
  if (!parsed)
    throw std::invalid_argument("not a \"host:port\" address: " + address);
  if (any_port)
    parsed->second = 0;
  return *parsed;
}

std::string format_peer_address(const std::string& host, uint16_t port) {
  const bool v6 = host.find(':') != std::string::npos;
  return (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

std::string describe_addresses(const std::vector<std::string>& addresses) {
  std::string text;
  for (size_t i = 0; i < addresses.size(); ++i)
    text += (i == 0 ? "" : i + 1 == addresses.size() ? " and " : ", ") + addresses[i];
  return text;
}

} // namespace ddactor
