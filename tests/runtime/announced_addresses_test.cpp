#include "runtime/announced_addresses.hpp"

#include <gtest/gtest.h>

namespace ddactor {
namespace {

using address_list = std::vector<std::pair<std::string, uint16_t>>;

// A machine with one IPv4 and one IPv6 address toward the internet; records what was asked.
struct fake_machine {
  std::vector<std::pair<bool, bool>> asked;
  std::vector<std::string> operator()(bool ipv4, bool ipv6) {
    asked.emplace_back(ipv4, ipv6);
    std::vector<std::string> found;
    if (ipv4)
      found.push_back("192.0.2.7");
    if (ipv6)
      found.push_back("2001:db8::7");
    return found;
  }
};

announced_addresses announce(const std::vector<std::string>& announce,
                             const std::vector<std::string>& listen,
                             const std::vector<std::string>& observed, fake_machine& machine) {
  return announce_addresses(announce, listen, observed,
                            [&](bool v4, bool v6) { return machine(v4, v6); });
}

TEST(announced_addresses, network_announce_wins_in_its_order_with_its_ports) {
  fake_machine machine;
  auto out = announce({"198.51.100.1:7100", "[2001:db8::1]:7000"}, {"0.0.0.0:7000"},
                      {"203.0.113.9"}, machine);
  EXPECT_EQ(out.from, announced_addresses::origin::configured);
  EXPECT_EQ(out.addresses, (address_list{{"198.51.100.1", 7100}, {"2001:db8::1", 7000}}));
  EXPECT_FALSE(out.guessed);
  EXPECT_TRUE(machine.asked.empty());
}

TEST(announced_addresses, what_the_initial_peers_saw_and_the_families_they_missed) {
  fake_machine machine;
  // Asked over IPv4 and IPv6: both answers, on the port listened on.
  auto both = announce({}, {"0.0.0.0:7000", "[::]:7000"}, {"203.0.113.9", "2001:db8::9"}, machine);
  EXPECT_EQ(both.from, announced_addresses::origin::observed);
  EXPECT_EQ(both.addresses, (address_list{{"203.0.113.9", 0}, {"2001:db8::9", 0}}));
  EXPECT_TRUE(machine.asked.empty());
  // Asked over IPv4 only, listening on IPv6 too: the IPv6 address comes from the machine.
  auto v4_seen = announce({}, {"0.0.0.0:7000", "[::]:7000"}, {"203.0.113.9"}, machine);
  EXPECT_EQ(v4_seen.addresses, (address_list{{"203.0.113.9", 0}, {"2001:db8::7", 0}}));
  ASSERT_EQ(machine.asked.size(), 1u);
  EXPECT_EQ(machine.asked[0], std::make_pair(false, true));
  // An IPv4-only listener adds nothing to an IPv4 answer (its private address is no use).
  auto v4_only = announce({}, {"0.0.0.0:7000"}, {"203.0.113.9"}, machine);
  EXPECT_EQ(v4_only.addresses, (address_list{{"203.0.113.9", 0}}));
}

TEST(announced_addresses, the_listen_addresses_with_wildcards_guessed) {
  fake_machine machine;
  auto specific = announce({}, {"10.1.0.2:7000", "[fd00::2]:7000"}, {}, machine);
  EXPECT_EQ(specific.from, announced_addresses::origin::listened);
  EXPECT_EQ(specific.addresses, (address_list{{"10.1.0.2", 0}, {"fd00::2", 0}}));
  EXPECT_FALSE(specific.guessed);
  EXPECT_TRUE(machine.asked.empty());

  auto v4_wildcard = announce({}, {"0.0.0.0:0"}, {}, machine);
  EXPECT_EQ(v4_wildcard.addresses, (address_list{{"192.0.2.7", 0}}));
  EXPECT_TRUE(v4_wildcard.guessed);
  // "::" alone is a dual-stack socket: both families.
  auto dual = announce({}, {"[::]:7000"}, {}, machine);
  EXPECT_EQ(dual.addresses, (address_list{{"192.0.2.7", 0}, {"2001:db8::7", 0}}));
  // Beside an IPv4 address, "::" is IPv6 only.
  auto mixed = announce({}, {"10.1.0.2:7000", "[::]:7000"}, {}, machine);
  EXPECT_EQ(mixed.addresses, (address_list{{"10.1.0.2", 0}, {"2001:db8::7", 0}}));
}

TEST(announced_addresses, nothing_to_say_is_empty) {
  auto nothing = announce_addresses({}, {"0.0.0.0:7000"}, {},
                                    [](bool, bool) { return std::vector<std::string>{}; });
  EXPECT_TRUE(nothing.addresses.empty());
}

} // namespace
} // namespace ddactor
