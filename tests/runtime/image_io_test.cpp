// Tests of image decoding, fit_image's resampling, crop and channel conversion, and the PNG and
// grid writers (read back with stb).
#include "runtime/image_io.hpp"
#include "runtime/label_font.hpp"
#include "tests/temporary_folder.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <numeric>

using namespace ddactor;
namespace fs = std::filesystem;

namespace {

decoded_image make_image(int width, int height, int channels, std::vector<uint8_t> pixels) {
  decoded_image image;
  image.width = width;
  image.height = height;
  image.channels = channels;
  image.pixels = std::move(pixels);
  return image;
}

// A grey image whose pixel (x, y) is f(x, y).
template <typename F>
decoded_image grey_image(int width, int height, F f) {
  std::vector<uint8_t> pixels;
  for (int y = 0; y < height; ++y)
    for (int x = 0; x < width; ++x) pixels.push_back(static_cast<uint8_t>(f(x, y)));
  return make_image(width, height, 1, std::move(pixels));
}

std::vector<std::string> files_in(const fs::path& dir) {
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(dir)) names.push_back(entry.path().filename());
  std::sort(names.begin(), names.end());
  return names;
}

} // namespace

// --- fit_image -----------------------------------------------------------------------------

TEST(image_io, fit_image_box_downsample_averages_2x2_blocks) {
  const decoded_image image = make_image(4, 4, 1,
                                         {0,   4,   10,  20,   //
                                          8,   12,  30,  40,   //
                                          100, 100, 255, 255,  //
                                          200, 200, 255, 251});
  EXPECT_EQ(fit_image(image, 2, 1), (std::vector<uint8_t>{6, 25, 150, 254}));
  // Means that are not whole round to nearest: 0.75 -> 1, 2.25 -> 2, 2.5 -> 3.
  EXPECT_EQ(fit_image(make_image(2, 2, 1, {1, 1, 1, 0}), 1, 1), std::vector<uint8_t>{1});
  EXPECT_EQ(fit_image(make_image(2, 2, 1, {2, 2, 2, 3}), 1, 1), std::vector<uint8_t>{2});
  EXPECT_EQ(fit_image(make_image(2, 2, 1, {2, 2, 3, 3}), 1, 1), std::vector<uint8_t>{3});
}

TEST(image_io, fit_image_3x_downsample_averages_3x3_blocks) {
  const decoded_image image = grey_image(6, 6, [](int x, int y) { return (x / 3) * 90 + y; });
  // Block (0,0): x-part 0, rows 0..2 -> mean 1. Block (1,0): 90 + 1. Rows 3..5: mean 4.
  EXPECT_EQ(fit_image(image, 2, 1), (std::vector<uint8_t>{1, 91, 4, 94}));
}

TEST(image_io, fit_image_of_the_same_size_is_an_exact_copy_in_chw) {
  std::vector<uint8_t> hwc;
  for (int i = 0; i < 3 * 3 * 3; ++i) hwc.push_back(static_cast<uint8_t>(i * 9));
  const auto chw = fit_image(make_image(3, 3, 3, hwc), 3, 3);
  ASSERT_EQ(chw.size(), 27u);
  for (int c = 0; c < 3; ++c)
    for (int p = 0; p < 9; ++p) EXPECT_EQ(chw[c * 9 + p], hwc[p * 3 + c]) << c << " " << p;
}

TEST(image_io, fit_image_crops_the_centre_of_wide_and_tall_images) {
  // Wide 6x2: the centre square is columns 2 and 3.
  const decoded_image wide = grey_image(6, 2, [](int x, int y) { return x * 10 + y; });
  EXPECT_EQ(fit_image(wide, 2, 1), (std::vector<uint8_t>{20, 30, 21, 31}));
  // Wide 5x2: the offset 1.5 rounds down to column 1.
  const decoded_image odd = grey_image(5, 2, [](int x, int y) { return x * 10 + y; });
  EXPECT_EQ(fit_image(odd, 2, 1), (std::vector<uint8_t>{10, 20, 11, 21}));
  // Tall 2x5: side 2, offset (5 - 2) / 2 = 1: rows 1 and 2.
  const decoded_image tall = grey_image(2, 5, [](int x, int y) { return x * 10 + y; });
  EXPECT_EQ(fit_image(tall, 2, 1), (std::vector<uint8_t>{1, 11, 2, 12}));
  // Wide 8x4 to 2: crop columns 2..5, then 2x2 averages.
  const decoded_image wide2 = grey_image(8, 4, [](int x, int y) { return x * 20 + y * 2; });
  // columns 2,3 -> 50, 4,5 -> 90; rows 0,1 -> +1, rows 2,3 -> +5.
  EXPECT_EQ(fit_image(wide2, 2, 1), (std::vector<uint8_t>{51, 91, 55, 95}));
}

TEST(image_io, fit_image_to_crops_the_centre_with_the_targets_aspect_ratio) {
  // 8x2 to a 4x1 target: the ratio fits, so the whole image is halved (2x2 averages).
  const decoded_image wide = grey_image(8, 2, [](int x, int y) { return x * 20 + y * 2; });
  EXPECT_EQ(fit_image_to(wide, 4, 1, 1), (std::vector<uint8_t>{11, 51, 91, 131}));
  // 6x6 to 2x1: the centre 6x3 (rows 1..3), then 3x3 averages: rows mean 2, columns 1 and 4.
  const decoded_image square = grey_image(6, 6, [](int x, int y) { return x * 10 + y; });
  EXPECT_EQ(fit_image_to(square, 2, 1, 1), (std::vector<uint8_t>{12, 42}));
  // 4x8 (tall) to 1x2 keeps it all: 4x4 averages.
  const decoded_image tall = grey_image(4, 8, [](int x, int y) { return x * 10 + 2 * y; });
  EXPECT_EQ(fit_image_to(tall, 1, 2, 1), (std::vector<uint8_t>{18, 26}));
  // Same size: an exact copy; square targets are fit_image.
  const decoded_image odd = grey_image(5, 3, [](int x, int y) { return x * 7 + y; });
  EXPECT_EQ(fit_image_to(odd, 5, 3, 1), odd.pixels);
  EXPECT_EQ(fit_image_to(wide, 2, 2, 1), fit_image(wide, 2, 1));
  EXPECT_THROW(fit_image_to(wide, 0, 2, 1), image_error);
}

TEST(image_io, fit_image_upsamples_linearly) {
  const decoded_image image = grey_image(2, 2, [](int x, int) { return x * 200; });
  const auto out = fit_image(image, 4, 1);
  for (int row = 0; row < 4; ++row)
    EXPECT_EQ(std::vector<uint8_t>(out.begin() + row * 4, out.begin() + row * 4 + 4),
              (std::vector<uint8_t>{0, 50, 150, 200}))
        << "row " << row;
}

TEST(image_io, fit_image_converts_rgb_to_grey_by_luma) {
  const decoded_image image = make_image(3, 1, 3, {255, 0, 0, 0, 255, 0, 0, 0, 255});
  // Height 1: the crop is column 1, the green pixel; 0.587 * 255 = 149.7.
  EXPECT_EQ(fit_image(image, 1, 1), (std::vector<uint8_t>{150}));
  const decoded_image red = make_image(1, 1, 3, {255, 0, 0});
  const decoded_image blue = make_image(1, 1, 3, {0, 0, 255});
  EXPECT_EQ(fit_image(red, 1, 1), (std::vector<uint8_t>{76}));
  EXPECT_EQ(fit_image(blue, 1, 1), (std::vector<uint8_t>{29}));
  const decoded_image grey_rgb = make_image(1, 1, 3, {77, 77, 77});
  EXPECT_EQ(fit_image(grey_rgb, 1, 1), (std::vector<uint8_t>{77}));
}

TEST(image_io, fit_image_converts_grey_to_rgb_by_copying) {
  const decoded_image image = grey_image(2, 2, [](int x, int y) { return 10 + x + 2 * y; });
  EXPECT_EQ(fit_image(image, 2, 3),
            (std::vector<uint8_t>{10, 11, 12, 13, 10, 11, 12, 13, 10, 11, 12, 13}));
}

TEST(image_io, fit_image_composites_alpha_on_white) {
  // RGBA: transparent black, opaque red, half-transparent black (alpha 102 = 0.4).
  const decoded_image rgba = make_image(1, 1, 4, {0, 0, 0, 0});
  EXPECT_EQ(fit_image(rgba, 1, 3), (std::vector<uint8_t>{255, 255, 255}));
  const decoded_image red = make_image(1, 1, 4, {255, 0, 0, 255});
  EXPECT_EQ(fit_image(red, 1, 3), (std::vector<uint8_t>{255, 0, 0}));
  const decoded_image half = make_image(1, 1, 4, {0, 0, 0, 102});
  EXPECT_EQ(fit_image(half, 1, 3), (std::vector<uint8_t>{153, 153, 153}));
  // Grey + alpha.
  const decoded_image grey_alpha = make_image(2, 1, 2, {0, 0, 50, 255});
  EXPECT_EQ(fit_image(make_image(1, 1, 2, {0, 0}), 1, 1), (std::vector<uint8_t>{255}));
  EXPECT_EQ(fit_image(grey_alpha, 1, 3), (std::vector<uint8_t>{255, 255, 255}));
}

// A constant image stays constant at any size and aspect: the weights of every output pixel
// sum to one, whatever the ratio.
class fit_image_shapes : public ::testing::TestWithParam<std::tuple<int, int, int>> {};

TEST_P(fit_image_shapes, keeps_constant_images_constant_and_has_the_right_size) {
  const auto [width, height, resolution] = GetParam();
  for (int channels : {1, 3}) {
    const decoded_image image = grey_image(width, height, [](int, int) { return 173; });
    const auto out = fit_image(image, resolution, channels);
    ASSERT_EQ(out.size(), static_cast<size_t>(channels * resolution * resolution));
    for (uint8_t v : out) ASSERT_EQ(v, 173);
  }
}

TEST_P(fit_image_shapes, keeps_the_mean_of_a_gradient) {
  const auto [width, height, resolution] = GetParam();
  const int side = std::min(width, height);
  const int x0 = (width - side) / 2;
  // A horizontal ramp inside the crop; its mean is kept by area averaging (up to rounding).
  const decoded_image image = grey_image(width, height, [&](int x, int) {
    return std::clamp(x - x0, 0, side - 1) * 200 / std::max(side - 1, 1);
  });
  double in_mean = 0;
  for (int x = x0; x < x0 + side; ++x) in_mean += image.pixels[static_cast<size_t>(x)];
  in_mean /= side;
  const auto out = fit_image(image, resolution, 1);
  const double out_mean = std::accumulate(out.begin(), out.end(), 0.0) / out.size();
  if (side >= resolution) EXPECT_NEAR(out_mean, in_mean, 0.51);
  else EXPECT_NEAR(out_mean, in_mean, 200.0 / side);  // linear interpolation clamps at edges
}

INSTANTIATE_TEST_SUITE_P(shapes, fit_image_shapes,
                         ::testing::Values(std::make_tuple(64, 64, 32), std::make_tuple(100, 70, 32),
                                           std::make_tuple(70, 100, 32), std::make_tuple(7, 5, 3),
                                           std::make_tuple(333, 500, 64), std::make_tuple(1, 1, 8),
                                           std::make_tuple(5, 3, 8), std::make_tuple(640, 480, 7),
                                           std::make_tuple(29, 31, 28)));

TEST(image_io, fit_image_rejects_bad_arguments) {
  const decoded_image image = grey_image(4, 4, [](int, int) { return 0; });
  EXPECT_THROW(fit_image(image, 0, 1), image_error);
  EXPECT_THROW(fit_image(image, 4, 2), image_error);
  EXPECT_THROW(fit_image(image, 4, 4), image_error);
  EXPECT_THROW(fit_image(make_image(4, 4, 1, {1, 2, 3}), 2, 1), image_error);
  EXPECT_THROW(fit_image(make_image(0, 4, 1, {}), 2, 1), image_error);
}

// --- files ---------------------------------------------------------------------------------

TEST(image_io, write_png_round_trips_and_leaves_no_temporary) {
  const ddactor::testing::temporary_folder scratch("ddactor_image_io");
  const auto& dir = scratch.path();
  std::vector<uint8_t> hwc;
  for (int i = 0; i < 5 * 3 * 3; ++i) hwc.push_back(static_cast<uint8_t>(i * 5));
  const auto file = dir / "round.png";
  write_png(file, hwc, 5, 3, 3);
  const decoded_image back = decode_image_file(file);
  EXPECT_EQ(back.width, 5);
  EXPECT_EQ(back.height, 3);
  EXPECT_EQ(back.channels, 3);
  EXPECT_EQ(back.pixels, hwc);
  // Overwriting replaces the file whole.
  write_png(file, std::vector<uint8_t>(4, 9), 2, 2, 1);
  EXPECT_EQ(decode_image_file(file).pixels, std::vector<uint8_t>(4, 9));
  EXPECT_EQ(files_in(dir), std::vector<std::string>{"round.png"});
}

TEST(image_io, write_png_errors_name_the_file) {
  try {
    write_png("/nonexistent/ddactor/out.png", std::vector<uint8_t>(4, 0), 2, 2, 1);
    FAIL() << "no image_error";
  } catch (const image_error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/ddactor/out.png"), std::string::npos)
        << e.what();
  }
  EXPECT_THROW(write_png("/tmp/x.png", std::vector<uint8_t>(3, 0), 2, 2, 1), image_error);
  EXPECT_THROW(write_png("/tmp/x.png", std::vector<uint8_t>(4, 0), 2, 2, 5), image_error);
}

TEST(image_io, decode_errors_name_the_file_and_the_reason) {
  const ddactor::testing::temporary_folder scratch("ddactor_image_io");
  const auto& dir = scratch.path();
  const auto text = dir / "text.png";
  std::ofstream(text) << "this is not an image";
  try {
    decode_image_file(text);
    FAIL() << "no image_error";
  } catch (const image_error& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find(text.string()), std::string::npos) << message;
    EXPECT_NE(message.find("unknown image type"), std::string::npos) << message;  // stb's
  }
  EXPECT_THROW(decode_image_file(dir / "missing.png"), image_error);
  std::ofstream(dir / "empty.png").close();
  EXPECT_THROW(decode_image_file(dir / "empty.png"), image_error);
}

TEST(image_io, detect_image_format_reads_signatures) {
  const std::vector<uint8_t> png = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0};
  const std::vector<uint8_t> jpeg = {0xff, 0xd8, 0xff, 0xe0};
  const std::vector<uint8_t> text = {'h', 'e', 'l', 'l', 'o'};
  EXPECT_EQ(detect_image_format(png), image_format::png);
  EXPECT_EQ(detect_image_format(jpeg), image_format::jpeg);
  EXPECT_EQ(detect_image_format(text), image_format::other);
  EXPECT_EQ(detect_image_format({}), image_format::other);
}

TEST(image_io, float_to_byte_inverts_images_to_float) {
  EXPECT_EQ(float_to_byte(-1.0f), 0);
  EXPECT_EQ(float_to_byte(1.0f), 255);
  EXPECT_EQ(float_to_byte(-7.0f), 0);
  EXPECT_EQ(float_to_byte(3.0f), 255);
  EXPECT_EQ(float_to_byte(std::nanf("")), 0);
  for (int v = 0; v < 256; ++v)
    EXPECT_EQ(float_to_byte((static_cast<float>(v) - 127.5f) / 127.5f), v);
}

TEST(image_io, grid_png_has_the_layout_and_pixels) {
  const ddactor::testing::temporary_folder scratch("ddactor_image_io");
  const auto& dir = scratch.path();
  // Three grey 2x3 images (h = 2, w = 3) in 2 columns with padding 1: 9 x 7 pixels.
  constexpr int count = 3, h = 2, w = 3;
  std::vector<float> images(count * h * w);
  for (int n = 0; n < count; ++n)
    for (int k = 0; k < h * w; ++k) images[static_cast<size_t>(n * h * w + k)] = -1.0f + n * 0.5f;
  images[0] = 1.0f;     // image 0, (0, 0)
  images[5] = 4.0f;     // image 0, (1, 2): clamped to 255
  images[12] = -3.0f;   // image 2, (0, 0): clamped to 0
  const auto file = dir / "grid.png";
  write_image_grid_png(file, images, count, 1, h, w, 2, 1);
  const decoded_image grid = decode_image_file(file);
  ASSERT_EQ(grid.width, 2 * (w + 1) + 1);
  ASSERT_EQ(grid.height, 2 * (h + 1) + 1);
  ASSERT_EQ(grid.channels, 1);
  auto at = [&](int x, int y) { return grid.pixels[static_cast<size_t>(y * grid.width + x)]; };
  EXPECT_EQ(at(0, 0), 255);  // border
  EXPECT_EQ(at(1, 1), 255);  // image 0 (0, 0) = 1
  EXPECT_EQ(at(2, 1), 0);    // image 0 (0, 1) = -1
  EXPECT_EQ(at(3, 2), 255);  // image 0 (1, 2), clamped
  EXPECT_EQ(at(4, 1), 255);  // padding between columns
  EXPECT_EQ(at(5, 1), 64);   // image 1 = -0.5 -> 63.75 -> 64
  EXPECT_EQ(at(7, 2), 64);
  EXPECT_EQ(at(1, 3), 255);  // padding between rows
  EXPECT_EQ(at(1, 4), 0);    // image 2 (0, 0), clamped
  EXPECT_EQ(at(2, 4), 128);  // image 2 = 0 -> 127.5 -> 128
  EXPECT_EQ(at(5, 4), 255);  // the empty cell stays white
  EXPECT_EQ(files_in(dir), std::vector<std::string>{"grid.png"});
}

TEST(image_io, grid_png_keeps_rgb_channels_apart) {
  const ddactor::testing::temporary_folder scratch("ddactor_image_io");
  const auto& dir = scratch.path();
  // Two RGB 1x1 images: pure red and pure blue, one row, padding 2: 8 x 5.
  const std::vector<float> images = {1, -1, -1, -1, -1, 1};
  const auto file = dir / "rgb.png";
  write_image_grid_png(file, images, 2, 3, 1, 1, 8);
  const decoded_image grid = decode_image_file(file);
  ASSERT_EQ(grid.width, 2 * (1 + 2) + 2);
  ASSERT_EQ(grid.height, 1 + 2 + 2);
  ASSERT_EQ(grid.channels, 3);
  auto px = [&](int x, int y) {
    const size_t at = static_cast<size_t>((y * grid.width + x) * 3);
    return std::vector<uint8_t>(grid.pixels.begin() + at, grid.pixels.begin() + at + 3);
  };
  EXPECT_EQ(px(2, 2), (std::vector<uint8_t>{255, 0, 0}));
  EXPECT_EQ(px(5, 2), (std::vector<uint8_t>{0, 0, 255}));
  EXPECT_EQ(px(3, 2), (std::vector<uint8_t>{255, 255, 255}));
  EXPECT_THROW(write_image_grid_png(file, images, 3, 3, 1, 1, 8), image_error);
  EXPECT_THROW(write_image_grid_png(file, images, 2, 3, 1, 1, 0), image_error);
}

TEST(image_io, grid_row_labels_widen_the_grid_and_ink_only_their_rows) {
  const ddactor::testing::temporary_folder scratch("ddactor_image_io");
  const auto& dir = scratch.path();
  // Two rows of two 28x28 grey images, all white: every dark pixel is a label's.
  constexpr int count = 4, side = 28, padding = 2;
  const std::vector<float> images(count * side * side, 1.0f);
  const std::vector<std::string> labels = {"T-shirt/top", "", "ignored: past the last row"};
  const auto file = dir / "labelled.png";
  write_image_grid_png(file, images, count, 1, side, side, 2, padding, labels);
  const decoded_image grid = decode_image_file(file);
  const int scale = row_label_scale(side);
  const int label_column = text_width("T-shirt/top", scale) + std::max(padding, 2 * scale);
  EXPECT_EQ(row_label_column_width(std::span(labels).first(2), side, padding), label_column);
  ASSERT_EQ(grid.width, label_column + 2 * (side + padding) + padding);
  ASSERT_EQ(grid.height, 2 * (side + padding) + padding);
  auto dark_in = [&](int x0, int x1, int y0, int y1) {
    int dark = 0;
    for (int y = y0; y < y1; ++y)
      for (int x = x0; x < x1; ++x) dark += grid.pixels[static_cast<size_t>(y * grid.width + x)] < 128;
    return dark;
  };
  EXPECT_GT(dark_in(0, label_column, padding, padding + side), 20);  // row 0 is labelled
  EXPECT_EQ(dark_in(0, label_column, padding + side, grid.height), 0);  // row 1 is not
  EXPECT_EQ(dark_in(label_column, grid.width, 0, grid.height), 0);      // images untouched

  // Without labels the grid is as before; a long label is cut, so the column stays bounded.
  const auto plain = encode_image_grid_png(images, count, 1, side, side, 2, padding);
  const auto long_label = encode_image_grid_png(images, count, 1, side, side, 2, padding,
                                                std::vector<std::string>{std::string(500, 'x')});
  EXPECT_EQ(decode_image_bytes(plain, "plain").width, 2 * (side + padding) + padding);
  EXPECT_EQ(decode_image_bytes(long_label, "long label").width,
            text_width(std::string(max_row_label_chars, 'x'), scale) +
                std::max(padding, 2 * scale) + 2 * (side + padding) + padding);
}
