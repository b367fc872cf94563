// fp16's dynamic loss scaling: an overflow skips the step and halves the scale (never below the
// minimum), growth_interval good steps in a row double it (never above the maximum), and two
// scalers fed the same decisions (peers of a swarm, judging the same averaged gradient) agree.
#include "models/loss_scaler.hpp"

#include <gtest/gtest.h>

namespace ddactor {
namespace {

TEST(loss_scaler, an_overflow_skips_the_step_and_backs_off) {
  loss_scaler scaler({.initial_scale = 1024, .growth_interval = 3, .min_scale = 256});
  EXPECT_TRUE(scaler.update(true));
  EXPECT_TRUE(scaler.update(true));
  EXPECT_FALSE(scaler.update(false));  // the run of good steps starts over
  EXPECT_EQ(scaler.scale(), 512);
  EXPECT_EQ(scaler.good_steps_in_a_row(), 0);
  EXPECT_FALSE(scaler.update(false));
  EXPECT_FALSE(scaler.update(false));
  EXPECT_EQ(scaler.scale(), 256);  // the minimum holds
  EXPECT_EQ(scaler.skipped_steps(), 3);
}

TEST(loss_scaler, the_scale_grows_after_an_interval_of_good_steps) {
  loss_scaler scaler({.initial_scale = 8, .growth_interval = 2, .max_scale = 32});
  scaler.update(true);
  EXPECT_EQ(scaler.scale(), 8);
  scaler.update(true);
  EXPECT_EQ(scaler.scale(), 16);
  for (int i = 0; i < 10; ++i)
    scaler.update(true);
  EXPECT_EQ(scaler.scale(), 32);  // the maximum holds
  EXPECT_EQ(scaler.skipped_steps(), 0);
}

TEST(loss_scaler, peers_fed_the_same_decisions_keep_the_same_scale) {
  loss_scaler a, b;
  const bool finite[] = {false, false, true, true, false, true, true, true};
  for (int round = 0; round < 500; ++round)
    for (bool f : finite)
      EXPECT_EQ(a.update(f), b.update(f));
  EXPECT_EQ(a.scale(), b.scale());
  EXPECT_EQ(a.skipped_steps(), b.skipped_steps());
}

TEST(loss_scaler, a_restored_scale_is_kept_only_when_sane) {
  loss_scaler scaler;
  scaler.restore(4096, 17);
  EXPECT_EQ(scaler.scale(), 4096);
  EXPECT_EQ(scaler.good_steps_in_a_row(), 17);
  scaler.restore(std::numeric_limits<double>::infinity(), -5);
  EXPECT_EQ(scaler.scale(), 4096);
  EXPECT_EQ(scaler.good_steps_in_a_row(), 0);
}

} // namespace
} // namespace ddactor
