// Tests of the image-folder loader on a folder generated here with good images, each kind of
// bad file, captions and files to ignore.
#include "runtime/image_folder_dataset.hpp"
#include "tests/temporary_folder.hpp"

#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>
#include <stb/stb_image_write.h>

#include <fstream>
#include <sstream>

using namespace ddactor;
namespace fs = std::filesystem;

namespace {

void write_text(const fs::path& file, std::string_view text) {
  fs::create_directories(file.parent_path());
  std::ofstream out(file, std::ios::binary);
  out.write(text.data(), static_cast<std::streamsize>(text.size()));
}

void write_png_file(const fs::path& file, int w, int h, int c, const std::vector<uint8_t>& hwc) {
  fs::create_directories(file.parent_path());
  ASSERT_NE(stbi_write_png(file.c_str(), w, h, c, hwc.data(), w * c), 0) << file;
}

void write_jpg_file(const fs::path& file, int w, int h, int c, const std::vector<uint8_t>& hwc) {
  fs::create_directories(file.parent_path());
  ASSERT_NE(stbi_write_jpg(file.c_str(), w, h, c, hwc.data(), 100), 0) << file;
}

std::string read_text(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// 4x4 RGB in 2x2 blocks: red, green / blue, (10, 20, 30).
std::vector<uint8_t> four_blocks() {
  const uint8_t colours[4][3] = {{255, 0, 0}, {0, 255, 0}, {0, 0, 255}, {10, 20, 30}};
  std::vector<uint8_t> hwc;
  for (int y = 0; y < 4; ++y)
    for (int x = 0; x < 4; ++x)
      for (int c = 0; c < 3; ++c) hwc.push_back(colours[(y / 2) * 2 + x / 2][c]);
  return hwc;
}

// 4x4 grey, pixel x * 16 + y * 64.
std::vector<uint8_t> grey_ramp() {
  std::vector<uint8_t> hwc;
  for (int y = 0; y < 4; ++y)
    for (int x = 0; x < 4; ++x) hwc.push_back(static_cast<uint8_t>(x * 16 + y * 64));
  return hwc;
}

// The folder every test here reads: good images in three formats and depths, and one of each
// kind of bad file.
void write_seed_folder(const fs::path& dir) {
  write_png_file(dir / "a" / "b.png", 4, 4, 3, four_blocks());
  write_text(dir / "a" / "b.txt", "  caption of b \n");
  std::vector<uint8_t> orange;
  for (int i = 0; i < 16; ++i) orange.insert(orange.end(), {200, 100, 50});
  write_jpg_file(dir / "c.jpg", 4, 4, 3, orange);
  write_text(dir / "c.txt", "c caption");
  write_png_file(dir / "d.PNG", 4, 4, 1, grey_ramp());
  write_text(dir / "d.txt", "\xef\xbb\xbf" "d: caf\xc3\xa9\r\n");
  write_jpg_file(dir / "sub" / "deeper" / "z.JPEG", 4, 4, 1, std::vector<uint8_t>(16, 90));
  write_text(dir / "sub" / "deeper" / "z.txt", "z caption");

  // unreadable: a PNG signature followed by garbage, and a PNG cut short
  std::string corrupt = "\x89PNG\r\n\x1a\n";
  for (int i = 0; i < 200; ++i) corrupt.push_back(static_cast<char>((i * 7919) % 251));
  write_text(dir / "corrupt.png", corrupt);
  write_text(dir / "corrupt.txt", "corrupt");
  write_png_file(dir / "full.png", 4, 4, 3, four_blocks());
  const std::string full = read_text(dir / "full.png");
  fs::remove(dir / "full.png");
  write_text(dir / "truncated.png", full.substr(0, full.size() / 2));
  write_text(dir / "truncated.txt", "truncated");
  // wrong format: text named .png, and a good image whose caption is not UTF-8
  write_text(dir / "text.png", "I am a text file, not an image.\n");
  write_text(dir / "text.txt", "text");
  write_png_file(dir / "badutf8.png", 4, 4, 1, grey_ramp());
  write_text(dir / "badutf8.txt", "caption \xff\xfe broken");
  // missing caption / missing image
  write_png_file(dir / "nocaption.png", 4, 4, 1, std::vector<uint8_t>(16, 7));
  write_text(dir / "orphan.txt", "no image for me");
  // ignored
  write_text(dir / "notes.md", "# notes");
  write_text(dir / "data.bin", "\x01\x02");
  write_text(dir / ".hidden.png", "hidden garbage");
  write_text(dir / ".git" / "x.png", "hidden folder garbage");
}

// Collects what spdlog writes while a test runs.
class captured_log {
 public:
  captured_log() : previous_(spdlog::default_logger()) {
    auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(stream_);
    sink->set_pattern("%l %v");
    spdlog::set_default_logger(std::make_shared<spdlog::logger>("captured", sink));
  }
  ~captured_log() { spdlog::set_default_logger(previous_); }
  std::string text() const { return stream_.str(); }
  int lines_containing(const std::string& needle) const {
    std::istringstream in(stream_.str());
    int n = 0;
    for (std::string line; std::getline(in, line);)
      if (line.find(needle) != std::string::npos) ++n;
    return n;
  }

 private:
  std::shared_ptr<spdlog::logger> previous_;
  std::ostringstream stream_;
};

} // namespace

TEST(image_folder_dataset, loads_good_images_in_path_order_and_counts_every_skip) {
  const ddactor::testing::temporary_folder scratch("ddactor_folder");
  const auto& dir = scratch.path();
  write_seed_folder(dir);
  captured_log log;
  skipped_files skipped;
  const image_dataset data = load_image_folder(dir, 2, 3, true, skipped);

  ASSERT_EQ(data.count, 4);
  EXPECT_EQ(data.channels, 3);
  EXPECT_EQ(data.height, 2);
  EXPECT_EQ(data.width, 2);
  EXPECT_TRUE(data.labels.empty());
  EXPECT_EQ(data.captions,
            (std::vector<std::string>{"caption of b", "c caption", "d: caf\xc3\xa9", "z caption"}));

  // a/b.png: each 2x2 block averages to its colour; CHW.
  const auto b = data.image(0);
  EXPECT_EQ(std::vector<uint8_t>(b.begin(), b.end()),
            (std::vector<uint8_t>{255, 0, 0, 10, 0, 255, 0, 20, 0, 0, 255, 30}));
  // c.jpg: constant (200, 100, 50) through JPEG at quality 100.
  const auto c = data.image(1);
  for (int p = 0; p < 4; ++p) {
    EXPECT_NEAR(c[p], 200, 3);
    EXPECT_NEAR(c[4 + p], 100, 3);
    EXPECT_NEAR(c[8 + p], 50, 3);
  }
  // d.PNG (grey ramp): block means 40, 72, 168, 200, copied into the three channels.
  const auto d = data.image(2);
  EXPECT_EQ(std::vector<uint8_t>(d.begin(), d.end()),
            (std::vector<uint8_t>{40, 72, 168, 200, 40, 72, 168, 200, 40, 72, 168, 200}));
  const auto z = data.image(3);  // sub/deeper/z.JPEG, grey 90
  for (uint8_t v : z) EXPECT_NEAR(v, 90, 2);

  EXPECT_EQ(skipped.unreadable, 2);       // corrupt.png, truncated.png
  EXPECT_EQ(skipped.wrong_format, 2);     // text.png, badutf8.txt
  EXPECT_EQ(skipped.missing_caption, 1);  // nocaption.png
  EXPECT_EQ(skipped.missing_image, 1);    // orphan.txt
  EXPECT_EQ(skipped.total(), 6);
  ASSERT_EQ(skipped.examples.size(), 6u);

  // Each skipped file is logged once, by name; the hidden and other files are not mentioned.
  for (const char* name : {"corrupt.png", "truncated.png", "text.png", "badutf8.txt",
                           "nocaption.png", "orphan.txt"}) {
    EXPECT_EQ(log.lines_containing(name), 1) << name << "\n" << log.text();
    EXPECT_EQ(std::count_if(skipped.examples.begin(), skipped.examples.end(),
                            [&](const std::string& e) { return e.find(name) != std::string::npos; }),
              1)
        << name;
  }
  EXPECT_EQ(log.lines_containing("warning"), 6) << log.text();
  EXPECT_EQ(log.lines_containing("hidden"), 0) << log.text();
  EXPECT_EQ(log.lines_containing("notes.md"), 0) << log.text();
  EXPECT_EQ(log.lines_containing("4 images loaded"), 1) << log.text();
}

TEST(image_folder_dataset, grey_output_uses_luma) {
  const ddactor::testing::temporary_folder scratch("ddactor_folder");
  const auto& dir = scratch.path();
  write_seed_folder(dir);
  skipped_files skipped;
  const image_dataset data = load_image_folder(dir, 2, 1, true, skipped);
  ASSERT_EQ(data.count, 4);
  const auto b = data.image(0);
  EXPECT_EQ(std::vector<uint8_t>(b.begin(), b.end()), (std::vector<uint8_t>{76, 150, 29, 18}));
  const auto d = data.image(2);
  EXPECT_EQ(std::vector<uint8_t>(d.begin(), d.end()), (std::vector<uint8_t>{40, 72, 168, 200}));
}

TEST(image_folder_dataset, without_required_captions_keeps_images_that_have_none) {
  const ddactor::testing::temporary_folder scratch("ddactor_folder");
  const auto& dir = scratch.path();
  write_seed_folder(dir);
  skipped_files skipped;
  const image_dataset data = load_image_folder(dir, 2, 3, false, skipped);
  ASSERT_EQ(data.count, 5);
  EXPECT_EQ(data.captions, (std::vector<std::string>{"caption of b", "c caption",
                                                     "d: caf\xc3\xa9", "", "z caption"}));
  const auto n = data.image(3);
  EXPECT_EQ(std::vector<uint8_t>(n.begin(), n.end()), std::vector<uint8_t>(12, 7));
  EXPECT_EQ(skipped.missing_caption, 0);
  EXPECT_EQ(skipped.unreadable, 2);
  EXPECT_EQ(skipped.wrong_format, 2);
  EXPECT_EQ(skipped.missing_image, 1);
}

TEST(image_folder_dataset, result_does_not_depend_on_the_thread_count) {
  const ddactor::testing::temporary_folder scratch("ddactor_folder");
  const auto& dir = scratch.path();
  for (int i = 0; i < 40; ++i) {
    std::vector<uint8_t> hwc;
    for (int k = 0; k < 9 * 7 * 3; ++k) hwc.push_back(static_cast<uint8_t>(i * 13 + k * 3));
    char name[32];
    std::snprintf(name, sizeof name, "img_%03d", (i * 17) % 40);  // written out of order
    write_png_file(dir / (std::string(name) + ".png"), 9, 7, 3, hwc);
    write_text(dir / (std::string(name) + ".txt"), "caption " + std::string(name));
  }
  skipped_files one_skipped, many_skipped;
  const image_dataset one = load_image_folder(dir, 5, 3, true, one_skipped, 1);
  const image_dataset many = load_image_folder(dir, 5, 3, true, many_skipped, 4);
  ASSERT_EQ(one.count, 40);
  EXPECT_EQ(one.pixels, many.pixels);
  EXPECT_EQ(one.captions, many.captions);
  EXPECT_EQ(one.captions.front(), "caption img_000");
  EXPECT_EQ(one.captions.back(), "caption img_039");
  EXPECT_TRUE(std::is_sorted(one.captions.begin(), one.captions.end()));
  EXPECT_EQ(one_skipped.total(), 0);
}

TEST(image_folder_dataset, folder_without_usable_images_is_an_error_naming_it) {
  const ddactor::testing::temporary_folder scratch("ddactor_folder");
  const auto& dir = scratch.path();
  write_text(dir / "text.png", "not an image");
  write_text(dir / "text.txt", "caption");
  write_text(dir / "orphan.txt", "caption");
  skipped_files skipped;
  try {
    load_image_folder(dir, 8, 3, true, skipped);
    FAIL() << "no image_folder_error";
  } catch (const image_folder_error& e) {
    EXPECT_NE(std::string(e.what()).find(dir.string()), std::string::npos) << e.what();
  }
  EXPECT_EQ(skipped.wrong_format, 1);
  EXPECT_EQ(skipped.missing_image, 1);

  const auto empty = dir / "empty";
  fs::create_directories(empty);
  EXPECT_THROW(load_image_folder(empty, 8, 3, true, skipped), image_folder_error);
  EXPECT_THROW(load_image_folder(dir / "missing", 8, 3, true, skipped), image_folder_error);
  EXPECT_THROW(load_image_folder(dir, 8, 2, true, skipped), image_folder_error);
}

TEST(image_folder_dataset, skips_add_to_the_callers_counts) {
  const ddactor::testing::temporary_folder scratch("ddactor_folder");
  const auto& dir = scratch.path();
  write_seed_folder(dir);
  skipped_files skipped;
  skipped.unreadable = 10;
  load_image_folder(dir, 2, 3, true, skipped);
  EXPECT_EQ(skipped.unreadable, 12);
  EXPECT_EQ(skipped.total(), 16);
}

TEST(image_folder_dataset, clean_caption_trims_and_checks_utf8) {
  std::string out = "unchanged";
  EXPECT_TRUE(clean_caption("  a cat\t\r\n", out));
  EXPECT_EQ(out, "a cat");
  EXPECT_TRUE(clean_caption("\xef\xbb\xbf\n", out));
  EXPECT_EQ(out, "");
  EXPECT_TRUE(clean_caption("\xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x90\x88", out));  // 日本 🐈
  EXPECT_EQ(out, "\xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x90\x88");
  out = "unchanged";
  EXPECT_FALSE(clean_caption("latin-1 caf\xe9", out));                 // a lone lead byte
  EXPECT_FALSE(clean_caption("\xc0\xaf", out));                        // overlong '/'
  EXPECT_FALSE(clean_caption("\xed\xa0\x80", out));                    // a UTF-16 surrogate
  EXPECT_FALSE(clean_caption("\xf4\x90\x80\x80", out));                // above U+10FFFF
  EXPECT_FALSE(clean_caption("\xe6\x97", out));                        // cut short
  EXPECT_EQ(out, "unchanged");
}
