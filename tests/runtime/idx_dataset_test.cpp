// Tests of the IDX readers: the real Fashion-MNIST files from Debian's dataset-fashion-mnist
// (skipped when not installed) and malformed files generated here.
#include "runtime/idx_dataset.hpp"
#include "tests/temporary_folder.hpp"

#include <gtest/gtest.h>
#include <zlib.h>

#include <array>
#include <fstream>
#include <numeric>

using namespace ddactor;
namespace fs = std::filesystem;

namespace {

void put_u32(std::vector<uint8_t>& out, uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<uint8_t>(v >> shift));
}

std::vector<uint8_t> idx_images_bytes(uint32_t count, uint32_t rows, uint32_t columns,
                                      uint32_t magic = idx_images_magic) {
  std::vector<uint8_t> out;
  put_u32(out, magic);
  put_u32(out, count);
  put_u32(out, rows);
  put_u32(out, columns);
  for (uint64_t i = 0; i < uint64_t{count} * rows * columns; ++i)
    out.push_back(static_cast<uint8_t>(i * 7));
  return out;
}

std::vector<uint8_t> idx_labels_bytes(std::vector<uint8_t> labels,
                                      uint32_t magic = idx_labels_magic) {
  std::vector<uint8_t> out;
  put_u32(out, magic);
  put_u32(out, static_cast<uint32_t>(labels.size()));
  out.insert(out.end(), labels.begin(), labels.end());
  return out;
}

void write_plain(const fs::path& file, const std::vector<uint8_t>& bytes) {
  std::ofstream out(file, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

void write_gz(const fs::path& file, const std::vector<uint8_t>& bytes) {
  gzFile gz = gzopen(file.c_str(), "wb");
  ASSERT_NE(gz, nullptr);
  if (!bytes.empty()) {
    ASSERT_EQ(gzwrite(gz, bytes.data(), static_cast<unsigned>(bytes.size())),
              static_cast<int>(bytes.size()));
  }
  ASSERT_EQ(gzclose(gz), Z_OK);
}

std::vector<uint8_t> read_all(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// A small Fashion-MNIST-shaped split (count images of 28x28) in `dir`.
void write_small_split(const fs::path& dir, const std::string& prefix, uint32_t count,
                       bool gz) {
  std::vector<uint8_t> labels(count);
  for (uint32_t i = 0; i < count; ++i) labels[i] = static_cast<uint8_t>(i % 10);
  const auto images = idx_images_bytes(count, 28, 28);
  const auto label_bytes = idx_labels_bytes(labels);
  if (gz) {
    write_gz(dir / (prefix + "-images-idx3-ubyte.gz"), images);
    write_gz(dir / (prefix + "-labels-idx1-ubyte.gz"), label_bytes);
  } else {
    write_plain(dir / (prefix + "-images-idx3-ubyte"), images);
    write_plain(dir / (prefix + "-labels-idx1-ubyte"), label_bytes);
  }
}

template <typename F>
std::string idx_error_message(F&& f) {
  try {
    f();
  } catch (const idx_error& e) {
    return e.what();
  }
  ADD_FAILURE() << "no idx_error thrown";
  return {};
}

} // namespace

// --- the real files ------------------------------------------------------------------------

class fashion_mnist_files : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fs::exists(fs::path(debian_fashion_mnist_dir) / "train-images-idx3-ubyte.gz"))
      GTEST_SKIP() << "dataset-fashion-mnist is not installed in " << debian_fashion_mnist_dir;
  }
};

// The published facts of Fashion-MNIST: 60000 train and 10000 test images of 28x28, balanced
// classes, mean pixel 0.2860 (train) and 0.2868 (test), first labels "Ankle boot, T-shirt/top,
// T-shirt/top, Dress, T-shirt/top" (train) and "Ankle boot, Pullover, Trouser, Trouser, Shirt".
TEST_F(fashion_mnist_files, train_split_has_the_published_shape) {
  const image_dataset data = load_fashion_mnist(debian_fashion_mnist_dir, dataset_split::train);
  EXPECT_EQ(data.count, 60000);
  EXPECT_EQ(data.channels, 1);
  EXPECT_EQ(data.height, 28);
  EXPECT_EQ(data.width, 28);
  ASSERT_EQ(data.pixels.size(), 60000u * 28 * 28);
  ASSERT_EQ(data.labels.size(), 60000u);
  std::array<int, 10> histogram{};
  for (int64_t label : data.labels) ++histogram[static_cast<size_t>(label)];
  for (int count : histogram) EXPECT_EQ(count, 6000);
  EXPECT_EQ(std::vector<int64_t>(data.labels.begin(), data.labels.begin() + 5),
            (std::vector<int64_t>{9, 0, 0, 3, 0}));
  const uint64_t sum = std::accumulate(data.pixels.begin(), data.pixels.end(), uint64_t{0});
  EXPECT_EQ(sum, 3431114169u);
  EXPECT_NEAR(static_cast<double>(sum) / data.pixels.size() / 255.0, 0.2860, 0.0001);
  ASSERT_EQ(data.class_names.size(), 10u);
  EXPECT_EQ(data.class_names[0], "T-shirt/top");
  EXPECT_EQ(data.class_names[9], "Ankle boot");
}

TEST_F(fashion_mnist_files, test_split_has_the_published_shape) {
  const image_dataset data = load_fashion_mnist(debian_fashion_mnist_dir, dataset_split::test);
  EXPECT_EQ(data.count, 10000);
  EXPECT_EQ(data.height, 28);
  EXPECT_EQ(data.width, 28);
  std::array<int, 10> histogram{};
  for (int64_t label : data.labels) ++histogram[static_cast<size_t>(label)];
  for (int count : histogram) EXPECT_EQ(count, 1000);
  EXPECT_EQ(std::vector<int64_t>(data.labels.begin(), data.labels.begin() + 5),
            (std::vector<int64_t>{9, 2, 1, 1, 6}));
  const uint64_t sum = std::accumulate(data.pixels.begin(), data.pixels.end(), uint64_t{0});
  EXPECT_EQ(sum, 573469082u);
  EXPECT_NEAR(static_cast<double>(sum) / data.pixels.size() / 255.0, 0.2868, 0.0001);
}

TEST_F(fashion_mnist_files, generic_readers_agree_with_the_loader) {
  const fs::path dir(debian_fashion_mnist_dir);
  const idx_images images = load_idx_images(dir / "t10k-images-idx3-ubyte.gz");
  EXPECT_EQ(images.count, 10000);
  EXPECT_EQ(images.rows, 28);
  EXPECT_EQ(images.columns, 28);
  const auto labels = load_idx_labels(dir / "t10k-labels-idx1-ubyte.gz");
  EXPECT_EQ(labels.size(), 10000u);
  EXPECT_EQ(labels[0], 9);
}

// --- generated files -----------------------------------------------------------------------

TEST(idx_dataset, loads_gzip_and_plain_files_alike) {
  const ddactor::testing::temporary_folder scratch("ddactor_idx");
  const auto& dir = scratch.path();
  fs::create_directories(dir / "gz");
  fs::create_directories(dir / "plain");
  write_small_split(dir / "gz", "t10k", 12, true);
  write_small_split(dir / "plain", "t10k", 12, false);
  const image_dataset a = load_fashion_mnist(dir / "gz", dataset_split::test);
  const image_dataset b = load_fashion_mnist(dir / "plain", dataset_split::test);
  EXPECT_EQ(a.count, 12);
  EXPECT_EQ(a.pixels, b.pixels);
  EXPECT_EQ(a.labels, b.labels);
  EXPECT_EQ(a.labels[11], 1);
  EXPECT_EQ(a.pixels[5], 35);
}

TEST(idx_dataset, prefers_the_gz_file_and_falls_back_to_the_plain_one) {
  const ddactor::testing::temporary_folder scratch("ddactor_idx");
  const auto& dir = scratch.path();
  write_gz(dir / "x.gz", {1});
  write_plain(dir / "x", {2});
  write_plain(dir / "y", {3});
  EXPECT_EQ(find_idx_file(dir, "x"), dir / "x.gz");
  EXPECT_EQ(find_idx_file(dir, "y"), dir / "y");
  const std::string message = idx_error_message([&] { find_idx_file(dir, "z"); });
  EXPECT_NE(message.find((dir / "z.gz").string()), std::string::npos) << message;
}

TEST(idx_dataset, missing_directory_names_the_file) {
  const std::string message = idx_error_message(
      [] { load_fashion_mnist("/nonexistent/ddactor-fashion", dataset_split::train); });
  EXPECT_NE(message.find("/nonexistent/ddactor-fashion/train-images-idx3-ubyte"),
            std::string::npos)
      << message;
}

// Each malformed file must throw idx_error whose message names the file and the problem.
struct malformed_case {
  std::string name;
  std::vector<uint8_t> bytes;
  bool images;          // read with load_idx_images, else load_idx_labels
  bool gz;
  std::string expected;  // in the message
};

void PrintTo(const malformed_case& c, std::ostream* os) { *os << c.name; }

class idx_malformed : public ::testing::TestWithParam<malformed_case> {};

TEST_P(idx_malformed, throws_idx_error_naming_the_file) {
  const malformed_case& c = GetParam();
  const ddactor::testing::temporary_folder scratch("ddactor_idx");
  const auto& dir = scratch.path();
  const auto file = dir / (c.name + (c.gz ? ".gz" : ""));
  if (c.gz)
    write_gz(file, c.bytes);
  else
    write_plain(file, c.bytes);
  const std::string message = idx_error_message([&] {
    if (c.images)
      load_idx_images(file);
    else
      load_idx_labels(file);
  });
  EXPECT_NE(message.find(file.string()), std::string::npos) << message;
  EXPECT_NE(message.find(c.expected), std::string::npos) << message;
}

std::vector<malformed_case> malformed_cases() {
  std::vector<malformed_case> cases;
  cases.push_back({"images_with_label_magic", idx_images_bytes(2, 28, 28, idx_labels_magic), true,
                   true, "bad magic number 0x00000801, expected 0x00000803"});
  cases.push_back({"labels_with_image_magic", idx_labels_bytes({1, 2}, idx_images_magic), false,
                   false, "bad magic number 0x00000803, expected 0x00000801"});
  auto truncated = idx_images_bytes(3, 28, 28);
  truncated.resize(truncated.size() - 100);
  cases.push_back({"truncated_images", truncated, true, true, "truncated"});
  cases.push_back({"truncated_plain_images", truncated, true, false, "truncated"});
  cases.push_back({"header_only_half", std::vector<uint8_t>(truncated.begin(), truncated.begin() + 6),
                   true, false, "truncated in the header"});
  cases.push_back({"empty", {}, false, false, "truncated in the header"});
  auto labels_short = idx_labels_bytes({1, 2, 3, 4});
  labels_short.pop_back();
  cases.push_back({"truncated_labels", labels_short, false, true, "truncated"});
  auto longer = idx_labels_bytes({1, 2, 3});
  longer.push_back(0);
  cases.push_back({"labels_with_extra_bytes", longer, false, true, "longer than its header"});
  // A forged header that claims 16 million images (13 GB) must fail on the data, not on
  // allocation; one that claims more than any IDX file could hold fails at once.
  auto forged = idx_images_bytes(1, 28, 28);
  forged[5] = forged[6] = forged[7] = 0xff;
  cases.push_back({"forged_count", forged, true, true, "truncated"});
  forged[4] = 0xff;
  cases.push_back({"absurd_count", forged, true, true, "absurd"});
  cases.push_back({"zero_rows", idx_images_bytes(0, 0, 28), true, false, "impossible"});
  return cases;
}

INSTANTIATE_TEST_SUITE_P(cases, idx_malformed, ::testing::ValuesIn(malformed_cases()),
                         [](const auto& info) { return info.param.name; });

TEST(idx_dataset, damaged_gzip_stream_is_reported) {
  const ddactor::testing::temporary_folder scratch("ddactor_idx");
  const auto& dir = scratch.path();
  const auto good = dir / "good.gz";
  write_gz(good, idx_images_bytes(4, 28, 28));
  const auto compressed = read_all(good);
  ASSERT_GT(compressed.size(), 40u);

  // Cut in the middle of the deflate stream.
  const auto cut = dir / "cut.gz";
  write_plain(cut, std::vector<uint8_t>(compressed.begin(), compressed.begin() + compressed.size() / 2));
  std::string message = idx_error_message([&] { load_idx_images(cut); });
  EXPECT_NE(message.find(cut.string()), std::string::npos) << message;

  // A wrong CRC in the gzip trailer: all data decompresses, the check at the end fails.
  auto bad_crc = compressed;
  bad_crc[bad_crc.size() - 8] ^= 0x5a;
  const auto crc = dir / "crc.gz";
  write_plain(crc, bad_crc);
  message = idx_error_message([&] { load_idx_images(crc); });
  EXPECT_NE(message.find(crc.string()), std::string::npos) << message;
  EXPECT_NE(message.find("corrupt"), std::string::npos) << message;
}

TEST(idx_dataset, count_mismatch_names_both_files) {
  const ddactor::testing::temporary_folder scratch("ddactor_idx");
  const auto& dir = scratch.path();
  write_gz(dir / "train-images-idx3-ubyte.gz", idx_images_bytes(5, 28, 28));
  write_gz(dir / "train-labels-idx1-ubyte.gz", idx_labels_bytes({0, 1, 2, 3}));
  const std::string message =
      idx_error_message([&] { load_fashion_mnist(dir, dataset_split::train); });
  EXPECT_NE(message.find((dir / "train-labels-idx1-ubyte.gz").string()), std::string::npos)
      << message;
  EXPECT_NE(message.find("4 labels"), std::string::npos) << message;
  EXPECT_NE(message.find("5 images"), std::string::npos) << message;
}

TEST(idx_dataset, label_out_of_range_is_rejected) {
  const ddactor::testing::temporary_folder scratch("ddactor_idx");
  const auto& dir = scratch.path();
  write_gz(dir / "t10k-images-idx3-ubyte.gz", idx_images_bytes(3, 28, 28));
  write_gz(dir / "t10k-labels-idx1-ubyte.gz", idx_labels_bytes({0, 10, 2}));
  const std::string message =
      idx_error_message([&] { load_fashion_mnist(dir, dataset_split::test); });
  EXPECT_NE(message.find((dir / "t10k-labels-idx1-ubyte.gz").string()), std::string::npos)
      << message;
  EXPECT_NE(message.find("label 10 of item 1"), std::string::npos) << message;
}

TEST(idx_dataset, images_that_are_not_28x28_are_not_fashion_mnist) {
  const ddactor::testing::temporary_folder scratch("ddactor_idx");
  const auto& dir = scratch.path();
  write_gz(dir / "t10k-images-idx3-ubyte.gz", idx_images_bytes(2, 32, 32));
  write_gz(dir / "t10k-labels-idx1-ubyte.gz", idx_labels_bytes({0, 1}));
  const std::string message =
      idx_error_message([&] { load_fashion_mnist(dir, dataset_split::test); });
  EXPECT_NE(message.find("32x32"), std::string::npos) << message;
  EXPECT_NE(message.find("t10k-images-idx3-ubyte.gz"), std::string::npos) << message;
  // The generic reader takes any size.
  EXPECT_EQ(load_idx_images(dir / "t10k-images-idx3-ubyte.gz").rows, 32);
}
