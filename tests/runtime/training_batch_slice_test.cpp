// Slices of a training batch: every per-example buffer is cut alike, the slice knows where it
// sits in the whole (also when the batch is itself a node's slice), and ranges outside the batch
// or buffers that do not match it are refused.
#include "runtime/training_batch_slice.hpp"

#include <gtest/gtest.h>

#include <stdexcept>

namespace ddactor {
namespace {

training_batch numbered(int64_t count) {
  training_batch b;
  b.count = count;
  b.channels = 1;
  b.height = 1;
  b.width = 2;
  b.latent_channels = 1;
  b.latent_height = 1;
  b.latent_width = 1;
  b.embedding_length = 1;
  b.embedding_width = 3;
  for (int64_t i = 0; i < count; ++i) {
    b.images.insert(b.images.end(), {static_cast<float>(i), static_cast<float>(i) + 0.5f});
    b.labels.push_back(i);
    b.captions.push_back("caption " + std::to_string(i));
    b.clusters.push_back(i % 3);
    b.latents.push_back(static_cast<float>(-i));
    b.embeddings.insert(b.embeddings.end(), 3, static_cast<float>(10 * i));
  }
  b.epoch_after = 4;
  b.position_after = 96;
  b.loader_generation = 2;
  return b;
}

TEST(training_batch_slice, cuts_every_buffer_alike_and_knows_its_place) {
  const auto slice = slice_of_batch(numbered(5), 1, 3);
  EXPECT_EQ(slice.count, 3);
  EXPECT_TRUE(slice.consistent());
  EXPECT_EQ(slice.images, (std::vector<float>{1, 1.5f, 2, 2.5f, 3, 3.5f}));
  EXPECT_EQ(slice.labels, (std::vector<int64_t>{1, 2, 3}));
  EXPECT_EQ(slice.captions, (std::vector<std::string>{"caption 1", "caption 2", "caption 3"}));
  EXPECT_EQ(slice.clusters, (std::vector<int64_t>{1, 2, 0}));
  EXPECT_EQ(slice.latents, (std::vector<float>{-1, -2, -3}));
  EXPECT_EQ(slice.embeddings, (std::vector<float>{10, 10, 10, 20, 20, 20, 30, 30, 30}));
  EXPECT_EQ(slice.node_offset, 1);
  EXPECT_EQ(slice.node_count, 5);
  EXPECT_EQ(slice.epoch_after, 4);
  EXPECT_EQ(slice.position_after, 96);
  EXPECT_EQ(slice.loader_generation, 2u);
}

TEST(training_batch_slice, a_slice_of_a_node_slice_sits_in_the_node_batch) {
  auto rank_one = numbered(4);  // examples [4, 8) of a node batch of 8
  rank_one.node_offset = 4;
  rank_one.node_count = 8;
  const auto slice = slice_of_batch(rank_one, 3, 1);
  EXPECT_EQ(slice.node_offset, 7);
  EXPECT_EQ(slice.node_count, 8);
  EXPECT_EQ(slice.labels, (std::vector<int64_t>{3}));
}

TEST(training_batch_slice, empty_buffers_stay_empty) {
  auto b = numbered(3);
  b.latents.clear();
  b.embeddings.clear();
  b.captions.clear();
  const auto slice = slice_of_batch(b, 0, 2);
  EXPECT_TRUE(slice.latents.empty());
  EXPECT_TRUE(slice.embeddings.empty());
  EXPECT_TRUE(slice.captions.empty());
  EXPECT_EQ(slice.images.size(), 4u);
}

TEST(training_batch_slice, refuses_ranges_outside_and_buffers_that_do_not_fit) {
  const auto b = numbered(3);
  EXPECT_THROW(slice_of_batch(b, 2, 2), std::invalid_argument);
  EXPECT_THROW(slice_of_batch(b, -1, 1), std::invalid_argument);
  EXPECT_THROW(slice_of_batch(b, 0, -1), std::invalid_argument);
  auto short_labels = b;
  short_labels.labels.pop_back();
  EXPECT_THROW(slice_of_batch(short_labels, 0, 1), std::invalid_argument);
  auto short_images = b;
  short_images.images.pop_back();
  EXPECT_THROW(slice_of_batch(short_images, 0, 1), std::invalid_argument);
}

} // namespace
} // namespace ddactor
