// all_finite: every NaN and infinity is found wherever it sits (first, last, on either side of the
// blocks it checks at once), and every finite float passes (zeros, subnormals, the largest).
#include "runtime/finite_values.hpp"

#include <gtest/gtest.h>

#include <limits>
#include <vector>

namespace ddactor {
namespace {

TEST(all_finite, finds_each_non_finite_value_wherever_it_is) {
  const float bad[] = {std::numeric_limits<float>::quiet_NaN(),
                       std::numeric_limits<float>::signaling_NaN(),
                       std::numeric_limits<float>::infinity(),
                       -std::numeric_limits<float>::infinity(),
                       -std::numeric_limits<float>::quiet_NaN()};
  const std::size_t length = 3 * 4096 + 5;
  for (float value : bad)
    for (std::size_t at : {std::size_t{0}, std::size_t{4095}, std::size_t{4096}, std::size_t{8191},
                           length - 1}) {
      std::vector<float> values(length, 1.0f);
      values[at] = value;
      EXPECT_FALSE(all_finite(values)) << value << " at " << at;
    }
}

TEST(all_finite, passes_every_kind_of_finite_value) {
  EXPECT_TRUE(all_finite({}));
  const std::vector<float> good = {0.0f,
                                   -0.0f,
                                   std::numeric_limits<float>::denorm_min(),
                                   -std::numeric_limits<float>::min(),
                                   std::numeric_limits<float>::max(),
                                   std::numeric_limits<float>::lowest(),
                                   1e-30f,
                                   3.5f};
  EXPECT_TRUE(all_finite(good));
}

} // namespace
} // namespace ddactor
