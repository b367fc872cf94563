#include "runtime/allreduce/link_rate_estimate.hpp"

#include <gtest/gtest.h>

#include <cmath>

namespace ddactor {
namespace {

TEST(link_rate_estimate, starts_unknown_and_takes_its_first_sample) {
  link_rate_estimate rates;
  EXPECT_EQ(rates.limiting(), 0);
  rates.add_download(10e6, 1.0);
  EXPECT_DOUBLE_EQ(rates.download(), 10e6);
  EXPECT_DOUBLE_EQ(rates.limiting(), 10e6);  // the only direction measured
}

TEST(link_rate_estimate, the_slower_direction_limits) {
  link_rate_estimate rates;
  rates.add_download(50e6, 1.0);
  rates.add_upload(5e6, 20e6);
  EXPECT_DOUBLE_EQ(rates.limiting(), 5e6);
}

TEST(link_rate_estimate, small_rounds_and_nonsense_say_nothing) {
  link_rate_estimate rates;
  rates.add_download(1000, 0.001);  // latency, not rate
  rates.add_download(50e6, 0);
  rates.add_upload(std::nan(""), 50e6);
  rates.add_upload(-1, 50e6);
  EXPECT_EQ(rates.download(), 0);
  EXPECT_EQ(rates.upload(), 0);
}

TEST(link_rate_estimate, follows_a_changed_link_within_a_few_rounds) {
  link_rate_estimate rates;
  rates.add_download(100e6, 1.0);
  for (int round = 0; round < 10; ++round)
    rates.add_download(10e6, 1.0);
  EXPECT_NEAR(rates.download(), 10e6, 0.1 * 10e6);
}

} // namespace
} // namespace ddactor
