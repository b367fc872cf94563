#include "runtime/local_addresses.hpp"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>

namespace ddactor {
namespace {

std::optional<std::string> to_text(const sockaddr* address) {
  char text[INET6_ADDRSTRLEN] = {};
  const void* raw = address->sa_family == AF_INET6
                      ? static_cast<const void*>(
                          &reinterpret_cast<const sockaddr_in6*>(address)->sin6_addr)
                      : static_cast<const void*>(
                          &reinterpret_cast<const sockaddr_in*>(address)->sin_addr);
  if (!::inet_ntop(address->sa_family, raw, text, sizeof text))
    return std::nullopt;
  return std::string(text);
}

bool usable(const sockaddr* address) {
  if (address->sa_family == AF_INET) {
    const uint32_t ip = ntohl(reinterpret_cast<const sockaddr_in*>(address)->sin_addr.s_addr);
    const bool loopback = (ip >> 24) == 127;
    const bool link_local = (ip >> 16) == 0xA9FE;  // 169.254/16
    return ip != 0 && !loopback && !link_local;
  }
  if (address->sa_family == AF_INET6) {
    const auto& ip = reinterpret_cast<const sockaddr_in6*>(address)->sin6_addr;
    return !IN6_IS_ADDR_LOOPBACK(&ip) && !IN6_IS_ADDR_LINKLOCAL(&ip) &&
           !IN6_IS_ADDR_UNSPECIFIED(&ip) && !IN6_IS_ADDR_V4MAPPED(&ip);
  }
  return false;
}

// The local address a datagram to `public_address` would leave from.
std::optional<std::string> route_source(int family, const sockaddr* public_address,
                                        socklen_t length) {
  const int fd = ::socket(family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return std::nullopt;
  std::optional<std::string> found;
  sockaddr_storage local{};
  socklen_t local_length = sizeof local;
  if (::connect(fd, public_address, length) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &local_length) == 0 &&
      usable(reinterpret_cast<const sockaddr*>(&local)))
    found = to_text(reinterpret_cast<const sockaddr*>(&local));
  ::close(fd);
  return found;
}

} // namespace

std::vector<std::string> usable_local_addresses() {
  ifaddrs* list = nullptr;
  if (::getifaddrs(&list) != 0)
    return {};
  std::vector<std::string> v4, v6;
  for (const ifaddrs* at = list; at != nullptr; at = at->ifa_next) {
    if (at->ifa_addr == nullptr || !(at->ifa_flags & IFF_UP) || !usable(at->ifa_addr))
      continue;
    if (auto text = to_text(at->ifa_addr))
      (at->ifa_addr->sa_family == AF_INET ? v4 : v6).push_back(*text);
  }
  ::freeifaddrs(list);
  v4.insert(v4.end(), v6.begin(), v6.end());
  return v4;
}

std::optional<std::string> default_route_address(int family) {
  // Documentation-range addresses would do as well: nothing is sent, the kernel only routes.
  if (family == AF_INET) {
    sockaddr_in v4{};
    v4.sin_family = AF_INET;
    v4.sin_port = htons(53);
    ::inet_pton(AF_INET, "192.0.2.1", &v4.sin_addr);
    return route_source(AF_INET, reinterpret_cast<const sockaddr*>(&v4), sizeof v4);
  }
  sockaddr_in6 v6{};
  v6.sin6_family = AF_INET6;
  v6.sin6_port = htons(53);
  ::inet_pton(AF_INET6, "2001:db8::1", &v6.sin6_addr);
  return route_source(AF_INET6, reinterpret_cast<const sockaddr*>(&v6), sizeof v6);
}

std::vector<std::string> guess_announce_hosts(bool ipv4, bool ipv6) {
  std::vector<std::string> found;
  for (int family : {AF_INET, AF_INET6})
    if (family == AF_INET ? ipv4 : ipv6)
      if (auto routed = default_route_address(family))
        found.push_back(*routed);
  if (!found.empty())
    return found;
  std::vector<std::string> usable;
  for (auto& address : usable_local_addresses())
    if (address.find(':') != std::string::npos ? ipv6 : ipv4)
      usable.push_back(address);
  if (usable.size() == 1)
    return usable;
  return {};
}

} // namespace ddactor
