#include "runtime/peer_address.hpp"

#include <gtest/gtest.h>

#include <stdexcept>

namespace ddactor {
namespace {

TEST(peer_address, formats_what_it_parses_with_brackets_for_ipv6) {
  EXPECT_EQ(format_peer_address("10.0.0.1", 7000), "10.0.0.1:7000");
  EXPECT_EQ(format_peer_address("peer.example.org", 1), "peer.example.org:1");
  EXPECT_EQ(format_peer_address("::1", 7000), "[::1]:7000");
  EXPECT_EQ(format_peer_address("2001:db8::5", 9), "[2001:db8::5]:9");
  for (auto [host, port] : {std::pair<std::string, uint16_t>{"::1", 7000}, {"10.0.0.1", 65535}})
    EXPECT_EQ(parse_peer_address(format_peer_address(host, port)), std::make_pair(host, port));
}

TEST(peer_address, listen_addresses_may_name_port_zero) {
  EXPECT_EQ(split_listen_address("0.0.0.0:0"), std::make_pair(std::string("0.0.0.0"), uint16_t{0}));
  EXPECT_EQ(split_listen_address("[::]:7000"), std::make_pair(std::string("::"), uint16_t{7000}));
  EXPECT_EQ(split_listen_address("[::1]:0"), std::make_pair(std::string("::1"), uint16_t{0}));
  for (const char* bad : {"", "host", "::1:7000", "host:x", "host:65536"})
    EXPECT_THROW(split_listen_address(bad), std::invalid_argument) << bad;
}

TEST(peer_address, describes_lists_for_logs) {
  EXPECT_EQ(describe_addresses({}), "");
  EXPECT_EQ(describe_addresses({"a:1"}), "a:1");
  EXPECT_EQ(describe_addresses({"a:1", "[::1]:2"}), "a:1 and [::1]:2");
  EXPECT_EQ(describe_addresses({"a:1", "b:2", "c:3"}), "a:1, b:2 and c:3");
}

} // namespace
} // namespace ddactor
