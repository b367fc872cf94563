// Tests of latent cache entries (write, read, peek at the header, damage) and of the batches the
// data loader makes of a latent diffusion model's examples, cached and in pixels.
#include "runtime/sd_examples.hpp"

#include <gtest/gtest.h>

#include <fstream>

#include "runtime/safetensors.hpp"
#include "tests/temporary_folder.hpp"

using namespace ddactor;
namespace fs = std::filesystem;

namespace {

struct fresh_dir : ddactor::testing::temporary_folder {
  fresh_dir() : temporary_folder("ddactor_sd_examples") {}
};

latent_cache_entry entry_with(float base, int width, int height) {
  latent_cache_entry entry;
  entry.key = "00000000000000ab";
  entry.width = width;
  entry.height = height;
  entry.latent_shape = {4, height / 8, width / 8};
  for (int64_t i = 0; i < 4 * (height / 8) * (width / 8); ++i)
    entry.latents.push_back(base + static_cast<float>(i));
  entry.embedding_shape = {3, 2};
  for (int i = 0; i < 6; ++i)
    entry.embeddings.push_back(-base - static_cast<float>(i));
  return entry;
}

} // namespace

TEST(sd_examples, cache_entries_round_trip_and_their_header_is_read_alone) {
  const fresh_dir dir;
  const auto file = dir / "entry.safetensors";
  const auto entry = entry_with(1.5f, 128, 64);
  write_latent_cache_entry(file, entry);
  const auto back = read_latent_cache_entry(file);
  EXPECT_EQ(back.key, entry.key);
  EXPECT_EQ(back.width, 128);
  EXPECT_EQ(back.height, 64);
  EXPECT_EQ(back.latent_shape, entry.latent_shape);
  EXPECT_EQ(back.latents, entry.latents);
  EXPECT_EQ(back.embedding_shape, entry.embedding_shape);
  EXPECT_EQ(back.embeddings, entry.embeddings);
  const auto header = peek_latent_cache_entry(file);
  ASSERT_TRUE(header.has_value());
  EXPECT_EQ(header->key, entry.key);
  EXPECT_EQ(header->width, 128);
  EXPECT_EQ(header->height, 64);
}

TEST(sd_examples, damaged_or_foreign_files_are_no_entries) {
  const fresh_dir dir;
  EXPECT_FALSE(peek_latent_cache_entry(dir / "missing.safetensors").has_value());
  const auto file = dir / "entry.safetensors";
  write_latent_cache_entry(file, entry_with(0, 64, 64));
  fs::resize_file(file, fs::file_size(file) - 10);  // truncated
  EXPECT_FALSE(peek_latent_cache_entry(file).has_value());
  EXPECT_THROW(read_latent_cache_entry(file), std::runtime_error);
  // A safetensors file of another kind.
  safetensors_content other;
  other.tensors.push_back({"latents", tensor_dtype::f32, {1}, std::vector<std::byte>(4)});
  write_safetensors_file(file, other);
  EXPECT_FALSE(peek_latent_cache_entry(file).has_value());
  try {
    read_latent_cache_entry(file);
    FAIL() << "no error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find(file.string()), std::string::npos) << e.what();
  }
}

TEST(sd_examples, cached_batches_hold_latents_and_embeddings_in_index_order) {
  const fresh_dir dir;
  sd_example_set data;
  data.buckets = {{64, 64}, {128, 64}};
  for (int i = 0; i < 3; ++i) {
    const auto file = dir / ("e" + std::to_string(i) + ".safetensors");
    write_latent_cache_entry(file, entry_with(100.0f * i, 128, 64));
    data.examples.push_back({1, "caption " + std::to_string(i), file, {}});
  }
  const std::vector<int64_t> indices{2, 0};
  const auto batch = make_sd_batch(data, indices);
  EXPECT_TRUE(batch.consistent());
  EXPECT_TRUE(batch.has_latents());
  EXPECT_TRUE(batch.images.empty());
  EXPECT_EQ(batch.count, 2);
  EXPECT_EQ(batch.width, 128);
  EXPECT_EQ(batch.height, 64);
  EXPECT_EQ(batch.latent_channels, 4);
  EXPECT_EQ(batch.latent_height, 8);
  EXPECT_EQ(batch.latent_width, 16);
  EXPECT_EQ(batch.embedding_length, 3);
  EXPECT_EQ(batch.embedding_width, 2);
  EXPECT_EQ(batch.latents.front(), 200.0f);
  EXPECT_EQ(batch.latents[4 * 8 * 16], 0.0f);
  EXPECT_EQ(batch.embeddings.front(), -200.0f);
  EXPECT_EQ(batch.captions, (std::vector<std::string>{"caption 2", "caption 0"}));
  // An entry whose size is not its bucket's is refused, naming the file.
  data.examples[0].bucket = 0;
  const std::vector<int64_t> first{0};
  try {
    make_sd_batch(data, first);
    FAIL() << "no error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("e0.safetensors"), std::string::npos) << e.what();
  }
  // Examples of two buckets never share a batch.
  const std::vector<int64_t> mixed{0, 1};
  EXPECT_THROW(make_sd_batch(data, mixed), std::invalid_argument);
}

TEST(sd_examples, pixel_batches_hold_floats_in_minus_one_to_one) {
  sd_example_set data;
  data.buckets = {{2, 1}};
  data.examples.push_back({0, "a", {}, {0, 255, 0, 255, 0, 255}});
  data.examples.push_back({0, "b", {}, {51, 51, 51, 51, 51, 51}});
  const std::vector<int64_t> both{1, 0};
  const auto batch = make_sd_batch(data, both);
  EXPECT_TRUE(batch.consistent());
  EXPECT_FALSE(batch.has_latents());
  EXPECT_EQ(batch.channels, 3);
  EXPECT_EQ(batch.width, 2);
  EXPECT_EQ(batch.height, 1);
  ASSERT_EQ(batch.images.size(), 12u);
  EXPECT_FLOAT_EQ(batch.images[0], 51 / 127.5f - 1);
  EXPECT_FLOAT_EQ(batch.images[6], -1.0f);
  EXPECT_FLOAT_EQ(batch.images[7], 1.0f);
  EXPECT_EQ(batch.captions, (std::vector<std::string>{"b", "a"}));
  EXPECT_EQ(data.bucket_of(), (std::vector<int>{0, 0}));
}
