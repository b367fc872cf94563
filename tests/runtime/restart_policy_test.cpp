#include "runtime/restart_policy.hpp"

#include <gtest/gtest.h>

namespace ddactor {
namespace {

using namespace std::chrono_literals;

TEST(restart_policy, backs_off_exponentially_up_to_the_cap) {
  restart_policy policy({100ms, 500ms, 10, 60s});
  auto t = restart_policy::clock::time_point{};
  EXPECT_EQ(policy.on_failure(t), 100ms);
  EXPECT_EQ(policy.on_failure(t + 1s), 200ms);
  EXPECT_EQ(policy.on_failure(t + 2s), 400ms);
  EXPECT_EQ(policy.on_failure(t + 3s), 500ms);
  EXPECT_EQ(policy.total_restarts(), 4);
}

TEST(restart_policy, gives_up_when_the_budget_is_spent) {
  restart_policy policy({10ms, 1s, 3, 10s});
  auto t = restart_policy::clock::time_point{};
  EXPECT_TRUE(policy.on_failure(t));
  EXPECT_TRUE(policy.on_failure(t + 1s));
  EXPECT_TRUE(policy.on_failure(t + 2s));
  EXPECT_FALSE(policy.on_failure(t + 3s));
}

TEST(restart_policy, old_failures_leave_the_window) {
  restart_policy policy({10ms, 1s, 2, 10s});
  auto t = restart_policy::clock::time_point{};
  EXPECT_TRUE(policy.on_failure(t));
  EXPECT_TRUE(policy.on_failure(t + 1s));
  EXPECT_FALSE(policy.on_failure(t + 2s));
  // Both earlier failures are older than the window now: the delay starts over.
  EXPECT_EQ(policy.on_failure(t + 20s), 10ms);
  EXPECT_EQ(policy.recent_restarts(), 1);
}

TEST(restart_policy, a_failure_that_repeats_itself_after_a_restart_is_not_restarted_again) {
  restart_policy policy({10ms, 1s, 5, 60s});
  auto t = restart_policy::clock::time_point{};
  EXPECT_TRUE(policy.on_failure(t, "out of memory"));
  EXPECT_FALSE(policy.repeated());
  EXPECT_FALSE(policy.on_failure(t + 1s, "out of memory"));
  EXPECT_TRUE(policy.repeated());
  // Different failures keep their budget.
  restart_policy varied({10ms, 1s, 5, 60s});
  EXPECT_TRUE(varied.on_failure(t, "loss is not finite at step 4"));
  EXPECT_TRUE(varied.on_failure(t + 1s, "loss is not finite at step 9"));
  EXPECT_FALSE(varied.repeated());
}

} // namespace
} // namespace ddactor
