// What a peer announces; see announced_addresses.hpp.
#include "runtime/announced_addresses.hpp"

#include <algorithm>

#include "runtime/peer_address.hpp"

namespace ddactor {
namespace {

bool is_v6(const std::string& host) { return host.find(':') != std::string::npos; }

void add(announced_addresses& out, const std::string& host, uint16_t port) {
  auto& list = out.addresses;
  if (std::find(list.begin(), list.end(), std::pair{host, port}) == list.end())
    list.emplace_back(host, port);
}

// The listen addresses, wildcards replaced by guesses, for the families wanted.
void add_listened(announced_addresses& out, const std::vector<std::string>& listen, bool want_v4,
                  bool want_v6,
                  const std::function<std::vector<std::string>(bool, bool)>& guess) {
  bool wild_v4 = false, wild_v6 = false;
  for (auto& address : listen) {
    auto [host, port] = split_listen_address(address);
    if (host.empty() || host == "0.0.0.0") {
      wild_v4 = true;
    } else if (host == "::") {
      // Alone, "::" takes IPv4 too (a dual-stack socket); beside others, only IPv6.
      wild_v6 = true;
      wild_v4 = wild_v4 || listen.size() == 1;
    } else if (is_v6(host) ? want_v6 : want_v4) {
      add(out, host, 0);
    }
  }
  wild_v4 = wild_v4 && want_v4;
  wild_v6 = wild_v6 && want_v6;
  if (!wild_v4 && !wild_v6)
    return;
  for (auto& host : guess(wild_v4, wild_v6)) {
    add(out, host, 0);
    out.guessed = true;
  }
}

} // namespace

announced_addresses announce_addresses(
  const std::vector<std::string>& announce, const std::vector<std::string>& listen,
  const std::vector<std::string>& observed_hosts,
  const std::function<std::vector<std::string>(bool ipv4, bool ipv6)>& guess) {
  announced_addresses out;
  if (!announce.empty()) {
    out.from = announced_addresses::origin::configured;
    for (auto& address : announce) {
      auto [host, port] = split_listen_address(address);
      add(out, host, port);
    }
    return out;
  }
  if (!observed_hosts.empty()) {
    out.from = announced_addresses::origin::observed;
    bool seen_v4 = false, seen_v6 = false;
    for (auto& host : observed_hosts) {
      add(out, host, 0);
      (is_v6(host) ? seen_v6 : seen_v4) = true;
    }
    add_listened(out, listen, !seen_v4, !seen_v6, guess);
    return out;
  }
  add_listened(out, listen, true, true, guess);
  return out;
}

} // namespace ddactor
