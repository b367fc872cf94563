#include "runtime/version.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>

TEST(version, is_semantic) {
  std::string v = ddactor::version_string;
  EXPECT_EQ(std::count(v.begin(), v.end(), '.'), 2);
}
