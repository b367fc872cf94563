// Progress with rate and ETA, on a clock the test moves: lines at the start, every interval and
// at the end (or a bar on a terminal); an ETA that is exact at a steady rate and does not jump
// with one slow interval; durations written for humans.
#include "runtime/progress_meter.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

namespace ddactor {
namespace {

using namespace std::chrono_literals;

struct fake_output {
  progress_meter::clock::time_point now{};
  std::vector<std::string> lines;
  std::vector<std::string> bars;

  progress_meter::options options(bool live_bar = false) {
    progress_meter::options o;
    o.live_bar = live_bar;
    o.line_interval = 5000ms;
    o.write_line = [this](const std::string& line) { lines.push_back(line); };
    o.draw_bar = [this](const std::string& bar, bool) { bars.push_back(bar); };
    o.now = [this] { return now; };
    return o;
  }
};

TEST(progress_meter, writes_a_line_at_the_start_every_interval_and_at_the_end) {
  fake_output out;
  {
    progress_meter meter("eval: generating", 2000, "images", out.options());
    for (int second = 1; second <= 20; ++second) {
      out.now += 1s;
      meter.advance(50);
    }
    EXPECT_EQ(out.lines.size(), 1u + 4u);  // the start, then every 5 s
    EXPECT_EQ(out.lines.back(),
              "eval: generating 1000/2000 images (50%), 50.0 images/s, ETA 20s");
  }
  EXPECT_EQ(out.lines.back(), "eval: generating done: 1000 images in 20s");
}

TEST(progress_meter, a_terminal_gets_a_bar_redrawn_in_place) {
  fake_output out;
  progress_meter meter("sampling", 10, "steps", out.options(true));
  out.now += 1s;
  meter.advance(5);
  ASSERT_FALSE(out.bars.empty());
  EXPECT_EQ(out.bars.back().substr(0, 32), "[===============               ]");
  EXPECT_TRUE(out.lines.empty());
}

TEST(progress_meter, the_eta_is_exact_at_a_steady_rate_and_one_slow_interval_moves_it_little) {
  fake_output out;
  progress_meter meter("training", 10000, "steps", out.options());
  for (int i = 0; i < 100; ++i) {
    out.now += 100ms;
    meter.advance(1);
  }
  EXPECT_NEAR(meter.eta_seconds(), 9900 * 0.1, 1e-6);
  // One step takes 10 s (a checkpoint, a slow round): the ETA must not multiply by 100.
  out.now += 10s;
  meter.advance(1);
  const double after = meter.eta_seconds();
  EXPECT_GT(after, 990.0);
  EXPECT_LT(after, 990.0 * 2.0);
}

TEST(progress_meter, durations_read_like_a_clock) {
  EXPECT_EQ(format_duration(3.2), "3s");
  EXPECT_EQ(format_duration(245), "4m05s");
  EXPECT_EQ(format_duration(7620), "2h07m");
  EXPECT_EQ(format_duration(std::nan("")), "?");
  EXPECT_EQ(format_duration(-1), "?");
}

TEST(smoothed_rate, settles_on_a_steady_rate_and_knows_nothing_before_the_first_interval) {
  smoothed_rate rate;
  EXPECT_TRUE(std::isinf(rate.seconds_for(10)));
  for (int i = 0; i < 50; ++i)
    rate.add(2, 1.0);
  EXPECT_NEAR(rate.value(), 2.0, 1e-9);
  EXPECT_NEAR(rate.seconds_for(10), 5.0, 1e-9);
  EXPECT_EQ(rate.seconds_for(0), 0.0);
}

} // namespace
} // namespace ddactor
