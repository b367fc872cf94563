// Tests of image_dataset: indexing, subsets, consistency checks and the uint8 -> float batch
// conversion.
#include "runtime/image_dataset.hpp"

#include <gtest/gtest.h>

#include <numeric>

using namespace ddactor;

namespace {

// `count` images of c x h x w whose bytes are (image * 37 + offset) mod 256.
image_dataset make_dataset(int64_t count, int c, int h, int w) {
  image_dataset data;
  data.count = count;
  data.channels = c;
  data.height = h;
  data.width = w;
  const int64_t size = data.image_size();
  data.pixels.resize(static_cast<size_t>(count * size));
  for (int64_t i = 0; i < count; ++i)
    for (int64_t k = 0; k < size; ++k)
      data.pixels[static_cast<size_t>(i * size + k)] = static_cast<uint8_t>((i * 37 + k) % 256);
  for (int64_t i = 0; i < count; ++i) {
    data.labels.push_back(i % 3);
    data.captions.push_back("caption " + std::to_string(i));
  }
  data.class_names = {"a", "b", "c"};
  return data;
}

} // namespace

TEST(image_dataset, images_to_float_maps_bytes_to_minus_one_one) {
  image_dataset data;
  data.count = 1;
  data.channels = 1;
  data.height = 1;
  data.width = 5;
  data.pixels = {0, 1, 127, 128, 255};
  std::vector<float> out(5);
  const int64_t first = 0;
  images_to_float(data, std::span(&first, 1), out);
  EXPECT_EQ(out[0], -1.0f);
  EXPECT_FLOAT_EQ(out[1], static_cast<float>(1 / 127.5 - 1));
  EXPECT_FLOAT_EQ(out[2], static_cast<float>(127 / 127.5 - 1));
  EXPECT_FLOAT_EQ(out[3], static_cast<float>(128 / 127.5 - 1));
  EXPECT_EQ(out[4], 1.0f);
}

// Sizes below, at and above the 64-element block of the vectorized loop, and not multiples.
class images_to_float_shapes : public ::testing::TestWithParam<std::tuple<int, int, int>> {};

TEST_P(images_to_float_shapes, writes_selected_images_in_order) {
  const auto [c, h, w] = GetParam();
  const image_dataset data = make_dataset(9, c, h, w);
  const std::vector<int64_t> indices = {4, 0, 8, 4};
  const auto size = static_cast<size_t>(data.image_size());
  std::vector<float> out(indices.size() * size, 42.0f);
  images_to_float(data, indices, out);
  for (size_t k = 0; k < indices.size(); ++k) {
    const auto image = data.image(indices[k]);
    for (size_t j = 0; j < size; ++j)
      ASSERT_FLOAT_EQ(out[k * size + j], static_cast<float>(image[j] / 127.5 - 1))
          << "image " << k << " element " << j;
  }
}

INSTANTIATE_TEST_SUITE_P(shapes, images_to_float_shapes,
                         ::testing::Values(std::make_tuple(1, 1, 1), std::make_tuple(1, 8, 8),
                                           std::make_tuple(3, 5, 7), std::make_tuple(1, 28, 28),
                                           std::make_tuple(3, 32, 32)));

TEST(image_dataset, images_to_float_rejects_bad_indices_and_sizes) {
  const image_dataset data = make_dataset(3, 1, 2, 2);
  std::vector<float> out(4);
  const std::vector<int64_t> past_end = {3};
  const std::vector<int64_t> negative = {-1};
  EXPECT_THROW(images_to_float(data, past_end, out), dataset_error);
  EXPECT_THROW(images_to_float(data, negative, out), dataset_error);
  const std::vector<int64_t> two = {0, 1};
  EXPECT_THROW(images_to_float(data, two, out), dataset_error);
  images_to_float(data, {}, std::span<float>());
}

TEST(image_dataset, image_returns_the_right_slice) {
  const image_dataset data = make_dataset(4, 3, 2, 2);
  const auto image = data.image(2);
  ASSERT_EQ(image.size(), 12u);
  EXPECT_EQ(image[0], 2 * 37 % 256);
  EXPECT_EQ(image[11], (2 * 37 + 11) % 256);
  EXPECT_THROW(data.image(4), dataset_error);
}

TEST(image_dataset, subset_keeps_labels_captions_and_class_names) {
  const image_dataset data = make_dataset(5, 1, 3, 3);
  const std::vector<int64_t> indices = {3, 1, 3};
  const image_dataset sub = data.subset(indices);
  EXPECT_EQ(sub.count, 3);
  EXPECT_EQ(sub.height, 3);
  EXPECT_EQ(sub.labels, (std::vector<int64_t>{0, 1, 0}));
  EXPECT_EQ(sub.captions, (std::vector<std::string>{"caption 3", "caption 1", "caption 3"}));
  EXPECT_EQ(sub.class_names, data.class_names);
  for (size_t k = 0; k < indices.size(); ++k) {
    const auto a = sub.image(static_cast<int64_t>(k));
    const auto b = data.image(indices[k]);
    EXPECT_TRUE(std::equal(a.begin(), a.end(), b.begin(), b.end()));
  }
  EXPECT_NO_THROW(sub.check_consistent());
  const std::vector<int64_t> bad = {5};
  EXPECT_THROW(data.subset(bad), dataset_error);
}

TEST(image_dataset, subset_without_labels_or_captions_stays_without) {
  image_dataset data = make_dataset(3, 1, 1, 1);
  data.labels.clear();
  data.captions.clear();
  const std::vector<int64_t> indices = {2};
  const image_dataset sub = data.subset(indices);
  EXPECT_TRUE(sub.labels.empty());
  EXPECT_TRUE(sub.captions.empty());
  EXPECT_EQ(sub.pixels, std::vector<uint8_t>{static_cast<uint8_t>(2 * 37)});
}

TEST(image_dataset, batch_of_takes_the_images_and_what_the_set_has_of_them) {
  image_dataset data = make_dataset(5, 2, 2, 2);
  data.clusters = {4, 3, 2, 1, 0};
  const std::vector<int64_t> indices = {4, 0};
  const auto batch = batch_of(data, indices);
  EXPECT_EQ(batch.count, 2);
  EXPECT_EQ(batch.channels, 2);
  EXPECT_EQ(batch.height, 2);
  EXPECT_EQ(batch.width, 2);
  std::vector<float> expected(16);
  images_to_float(data, indices, expected);
  EXPECT_EQ(batch.images, expected);
  EXPECT_EQ(batch.labels, (std::vector<int64_t>{1, 0}));
  EXPECT_EQ(batch.captions, (std::vector<std::string>{"caption 4", "caption 0"}));
  EXPECT_EQ(batch.clusters, (std::vector<int64_t>{0, 4}));
  EXPECT_TRUE(batch.consistent());

  data.labels.clear();
  data.captions.clear();
  data.clusters.clear();
  const auto bare = batch_of(data, indices);
  EXPECT_TRUE(bare.labels.empty() && bare.captions.empty() && bare.clusters.empty());
  const std::vector<int64_t> bad = {5};
  EXPECT_THROW(batch_of(data, bad), dataset_error);
}

TEST(image_dataset, check_consistent_finds_size_mismatches) {
  image_dataset data = make_dataset(3, 1, 2, 2);
  EXPECT_NO_THROW(data.check_consistent());
  data.labels.pop_back();
  EXPECT_THROW(data.check_consistent(), dataset_error);
  data = make_dataset(3, 1, 2, 2);
  data.pixels.pop_back();
  EXPECT_THROW(data.check_consistent(), dataset_error);
  data = make_dataset(3, 1, 2, 2);
  data.captions.push_back("extra");
  EXPECT_THROW(data.check_consistent(), dataset_error);
}

TEST(image_dataset, skipped_files_counts_and_caps_examples) {
  skipped_files skipped;
  skipped.unreadable = 1;
  skipped.missing_caption = 2;
  skipped.missing_image = 3;
  skipped.wrong_format = 4;
  EXPECT_EQ(skipped.total(), 10);
  for (size_t i = 0; i < skipped_files::max_examples + 5; ++i)
    skipped.add_example("file " + std::to_string(i));
  EXPECT_EQ(skipped.examples.size(), skipped_files::max_examples);
  EXPECT_EQ(skipped.examples.front(), "file 0");
}
