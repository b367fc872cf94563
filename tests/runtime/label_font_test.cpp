#include "runtime/label_font.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <vector>

using namespace ddactor;

namespace {

std::vector<uint8_t> rows_of(char c) {
  const auto rows = glyph_rows(c);
  return {rows.begin(), rows.end()};
}

}  // namespace

TEST(label_font, letters_are_drawn_as_capitals_and_unknown_bytes_as_a_question_mark) {
  EXPECT_EQ(rows_of('a'), rows_of('A'));
  EXPECT_EQ(rows_of('z'), rows_of('Z'));
  EXPECT_NE(rows_of('A'), rows_of('B'));
  EXPECT_EQ(rows_of('\xc3'), rows_of('?'));  // a UTF-8 lead byte
  EXPECT_EQ(rows_of('\n'), rows_of('?'));
  EXPECT_NE(rows_of('?'), rows_of(' '));
  const auto blank = rows_of(' ');
  EXPECT_TRUE(std::all_of(blank.begin(), blank.end(), [](uint8_t r) { return r == 0; }));
  // Every printable glyph used by Fashion-MNIST's class names has ink and fits 5 columns.
  for (char c : std::string("T-shirt/top Ankle boot0123456789")) {
    for (uint8_t row : rows_of(c)) EXPECT_LT(row, 1u << glyph_width) << c;
    if (c != ' ') {
      const auto rows = rows_of(c);
      EXPECT_TRUE(std::any_of(rows.begin(), rows.end(), [](uint8_t r) { return r != 0; })) << c;
    }
  }
}

TEST(label_font, text_width_counts_glyphs_and_the_gaps_between_them) {
  EXPECT_EQ(text_width("", 1), 0);
  EXPECT_EQ(text_width("A", 1), 5);
  EXPECT_EQ(text_width("AB", 1), 11);
  EXPECT_EQ(text_width("AB", 3), 33);
}

TEST(label_font, draw_text_sets_the_glyph_pixels_scaled_and_clips_at_the_edges) {
  constexpr int width = 14, height = 16, channels = 3;
  std::vector<uint8_t> image(width * height * channels, 255);
  draw_text(image, width, height, channels, 1, 1, "L", 2, 0);
  auto at = [&](int x, int y) { return image[static_cast<size_t>((y * width + x) * channels)]; };
  // 'L': the left column down all 7 rows, the bottom row across; each pixel a 2x2 block.
  EXPECT_EQ(at(1, 1), 0);
  EXPECT_EQ(at(2, 2), 0);
  EXPECT_EQ(at(1, 14), 0);
  EXPECT_EQ(at(10, 14), 0);  // the bottom row's last column: 1 + 4 * 2 + 1
  EXPECT_EQ(at(3, 1), 255);  // right of the stem
  EXPECT_EQ(at(0, 0), 255);
  EXPECT_EQ(image[static_cast<size_t>((1 * width + 1) * channels + 2)], 0);  // every channel
  // Text running past the image's edges is cut, not written out of bounds.
  std::vector<uint8_t> small(4 * 4, 255);
  draw_text(small, 4, 4, 1, -2, -2, "WWWW", 3, 0);  // the stem of the first W reaches x = 0
  EXPECT_EQ(small.size(), 16u);
  EXPECT_TRUE(std::any_of(small.begin(), small.end(), [](uint8_t v) { return v == 0; }));
}
