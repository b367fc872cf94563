#include "runtime/local_addresses.hpp"

#include <arpa/inet.h>

#include <gtest/gtest.h>

#include <algorithm>

namespace ddactor {
namespace {

bool is_numeric_address(const std::string& text) {
  in6_addr ignored{};
  return ::inet_pton(AF_INET, text.c_str(), &ignored) == 1 ||
         ::inet_pton(AF_INET6, text.c_str(), &ignored) == 1;
}

TEST(local_addresses, AreNumericAndNeverLoopbackOrLinkLocal) {
  for (const auto& address : usable_local_addresses()) {
    SCOPED_TRACE(address);
    EXPECT_TRUE(is_numeric_address(address));
    EXPECT_NE(address.rfind("127.", 0), 0u);
    EXPECT_NE(address.rfind("169.254.", 0), 0u);
    EXPECT_NE(address, "::1");
    EXPECT_NE(address.rfind("fe80:", 0), 0u);
  }
}

TEST(local_addresses, TheGuessesAreThisMachinesAddressesOfTheFamiliesAsked) {
  const auto all = usable_local_addresses();
  const auto both = guess_announce_hosts(true, true);
  if (both.empty()) {
    // Only where nothing routes out and the machine has no single usable address.
    EXPECT_NE(all.size(), 1u);
    return;
  }
  EXPECT_LE(both.size(), 2u);
  for (const auto& guess : both) {
    SCOPED_TRACE(guess);
    EXPECT_TRUE(is_numeric_address(guess));
    EXPECT_NE(std::find(all.begin(), all.end(), guess), all.end());
  }
  for (const auto& guess : guess_announce_hosts(true, false))
    EXPECT_EQ(guess.find(':'), std::string::npos) << guess;
  for (const auto& guess : guess_announce_hosts(false, true))
    EXPECT_NE(guess.find(':'), std::string::npos) << guess;
  EXPECT_TRUE(guess_announce_hosts(false, false).empty());
}

} // namespace
} // namespace ddactor
