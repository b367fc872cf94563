#pragma once
// Where this machine can be reached, for a peer that listens on a wildcard address and has
// nobody to ask (the first peer of a swarm, without network.announce): the source address the
// kernel would use for the internet (its default route), else its only usable interface
// address. Behind a router with port forwarding this is the private address: such a peer must
// set network.announce, and the log says so.

#include <optional>
#include <string>
#include <vector>

namespace ddactor {

/// Interface addresses other machines could dial: up, not loopback, not link-local (IPv4
/// 169.254/16, IPv6 fe80::/10); IPv4 first, each family in interface order.
std::vector<std::string> usable_local_addresses();

/// The address a connection to the internet would leave from in that family (AF_INET,
/// AF_INET6): a UDP socket "connected" to a public address, no packet sent; nullopt without a
/// default route.
std::optional<std::string> default_route_address(int family);

/// The addresses to announce for the families asked: each one's default_route_address(), else
/// the only usable local address of those families; empty when there is none or several
/// (ambiguous).
std::vector<std::string> guess_announce_hosts(bool ipv4, bool ipv6);

} // namespace ddactor
