// Tests of the aspect-ratio buckets: for a sweep of resolutions every bucket keeps within the
// pixel budget, has sides that are multiples of the step between r/2 and 2r, and the square is
// one of them; images go to the bucket of the closest aspect ratio.
#include "runtime/aspect_buckets.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

using namespace ddactor;

class aspect_buckets_sweep : public ::testing::TestWithParam<int> {};

TEST_P(aspect_buckets_sweep, buckets_stay_within_the_budget_with_sides_of_whole_steps) {
  const int r = GetParam();
  const auto buckets = aspect_buckets(r, 64);
  ASSERT_FALSE(buckets.empty());
  bool has_square = false;
  for (size_t i = 0; i < buckets.size(); ++i) {
    const auto& b = buckets[i];
    EXPECT_EQ(b.width % 64, 0) << b.width;
    EXPECT_EQ(b.height % 64, 0) << b.height;
    EXPECT_LE(int64_t{b.width} * b.height, int64_t{r} * r) << b.width << "x" << b.height;
    EXPECT_GE(std::min(b.width, b.height), std::max(64, r / 2 / 64 * 64));
    EXPECT_LE(std::max(b.width, b.height), 2 * r);
    if (i > 0) {
      const auto& previous = buckets[i - 1];
      EXPECT_GT(int64_t{b.width} * previous.height, int64_t{previous.width} * b.height)
        << "not ordered by aspect ratio: " << b.width << "x" << b.height;
    }
    EXPECT_NE(std::find(buckets.begin(), buckets.end(), bucket_shape{b.height, b.width}),
              buckets.end())
      << "no transpose of " << b.width << "x" << b.height;
    has_square = has_square || (b.width == r && b.height == r);
  }
  EXPECT_TRUE(has_square);
  // Every bucket uses most of its budget: one more step of its height, or of its width (for
  // the transposed ones), would not fit (or pass 2r).
  auto full = [r](int grown, int other) {
    return int64_t{grown + 64} * other > int64_t{r} * r || grown == 2 * r;
  };
  for (const auto& b : buckets)
    EXPECT_TRUE(full(b.height, b.width) || full(b.width, b.height)) << b.width << "x" << b.height;
}

INSTANTIATE_TEST_SUITE_P(resolutions, aspect_buckets_sweep,
                         ::testing::Values(64, 128, 256, 512, 768, 1024));

TEST(aspect_buckets, sd_512_has_the_usual_shapes) {
  const auto buckets = aspect_buckets(512);
  for (const bucket_shape expected :
       {bucket_shape{256, 1024}, bucket_shape{384, 640}, bucket_shape{448, 576},
        bucket_shape{512, 512}, bucket_shape{576, 448}, bucket_shape{640, 384},
        bucket_shape{768, 320}, bucket_shape{1024, 256}})
    EXPECT_NE(std::find(buckets.begin(), buckets.end(), expected), buckets.end())
      << expected.width << "x" << expected.height;
  EXPECT_EQ(aspect_buckets(64), (std::vector<bucket_shape>{{64, 64}}));
  EXPECT_EQ(aspect_buckets(128),
            (std::vector<bucket_shape>{{64, 256}, {64, 192}, {128, 128}, {192, 64}, {256, 64}}));
}

TEST(aspect_buckets, images_go_to_the_closest_aspect_ratio) {
  const auto buckets = aspect_buckets(512);
  auto shape_for = [&](int w, int h) { return buckets[nearest_bucket(buckets, w, h)]; };
  EXPECT_EQ(shape_for(1000, 1000), (bucket_shape{512, 512}));
  EXPECT_EQ(shape_for(1920, 1080), (bucket_shape{640, 384}));   // 1.78 -> 1.67
  EXPECT_EQ(shape_for(1080, 1920), (bucket_shape{384, 640}));
  EXPECT_EQ(shape_for(4000, 100), (bucket_shape{1024, 256}));  // past 4:1: the widest
  EXPECT_EQ(shape_for(600, 500), (bucket_shape{576, 448}));    // 1.2 -> 1.29, not 1.0
  // The distance is symmetric in log space: w:h and h:w land on transposed buckets.
  for (int w = 100; w <= 2000; w += 137)
    for (int h = 100; h <= 2000; h += 173) {
      const auto a = shape_for(w, h), b = shape_for(h, w);
      if (std::abs(std::log(double(w) / h)) > 1e-9) {
        EXPECT_EQ(a, (bucket_shape{b.height, b.width})) << w << "x" << h;
      }
    }
}

TEST(aspect_buckets, bad_arguments_are_refused) {
  EXPECT_THROW(aspect_buckets(100), std::invalid_argument);
  EXPECT_THROW(aspect_buckets(0), std::invalid_argument);
  EXPECT_THROW(nearest_bucket({}, 10, 10), std::invalid_argument);
  const auto buckets = aspect_buckets(64);
  EXPECT_THROW(nearest_bucket(buckets, 0, 10), std::invalid_argument);
}
