// The latent cache on the tiny fixture pipeline and a generated image folder: a first pass
// encodes every image, a second finds every entry; changing an image's bytes, its caption, the
// VAE's weights or the resolution makes exactly the affected entries again and removes the stale
// ones; a damaged entry is made again; buckets follow the images' shapes; the entries hold what
// the encoders compute.
#include "models/sd/latent_cache.hpp"

#include <gtest/gtest.h>

#include <fstream>

#include "runtime/image_io.hpp"
#include "runtime/safetensors.hpp"
#include "tests/models/sd/tiny_sd_folder.hpp"
#include "tests/temporary_folder.hpp"

namespace ddactor {
namespace {

namespace fs = std::filesystem;

// A w x h RGB PNG with a colour gradient seeded by `tone`.
void write_image(const fs::path& file, int w, int h, int tone) {
  std::vector<uint8_t> hwc;
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      for (int c = 0; c < 3; ++c)
        hwc.push_back(static_cast<uint8_t>((tone * 37 + x * 3 + y * 5 + c * 60) % 256));
  write_png(file, hwc, w, h, 3);
}

class latent_cache_test : public ::testing::Test {
 protected:
  void SetUp() override {
    fs::create_directories(root_ / "images");
    if (!tiny_sd::missing_fixtures().empty())
      return;
    tiny_sd::assemble(root_ / "pipeline");
    // Shapes for buckets at 128: square, wide (2:1, 4:1) and tall (1:4).
    const std::pair<int, int> shapes[] = {{64, 64}, {96, 48}, {128, 32}, {32, 128}, {70, 70}};
    for (int i = 0; i < 5; ++i) {
      write_image(root_ / "images" / ("img" + std::to_string(i) + ".png"), shapes[i].first,
                  shapes[i].second, i);
      tiny_sd::write_file(root_ / "images" / ("img" + std::to_string(i) + ".txt"),
                          "picture number " + std::to_string(i));
    }
  }

  sd_data_options options(int resolution = 64, bool buckets = false) const {
    sd_data_options o;
    o.image_folder = root_ / "images";
    o.cache_dir = root_ / "cache";
    o.resolution = resolution;
    o.buckets = buckets;
    return o;
  }

  // One pass over the folder with a freshly loaded pipeline.
  sd_data_report pass(const sd_data_options& o, sd_example_set* out = nullptr) {
    sd_pipeline_options pipeline_options;
    pipeline_options.unet = false;
    auto pipeline = load_sd_pipeline(root_ / "pipeline", pipeline_options);
    sd_data_report report;
    auto examples = prepare_sd_examples(pipeline, o, report);
    if (out != nullptr)
      *out = std::move(examples);
    return report;
  }

  size_t entries_on_disk() const {
    size_t n = 0;
    for (const auto& item : fs::directory_iterator(root_ / "cache"))
      n += item.path().extension() == ".safetensors";
    return n;
  }

  testing::temporary_folder folder_{"ddactor_latent_cache"};
  const fs::path root_ = folder_.path();
};

TEST_F(latent_cache_test, second_pass_hits_and_changes_make_only_their_entries_again) {
  SKIP_WITHOUT_TINY_SD();
  auto first = pass(options());
  EXPECT_EQ(first.cache_misses, 5);
  EXPECT_EQ(first.cache_hits, 0);
  EXPECT_EQ(entries_on_disk(), 5u);

  auto second = pass(options());
  EXPECT_EQ(second.cache_hits, 5);
  EXPECT_EQ(second.cache_misses, 0);
  EXPECT_EQ(second.stale_removed, 0);

  write_image(root_ / "images" / "img1.png", 96, 48, 99);  // new bytes
  tiny_sd::write_file(root_ / "images" / "img3.txt", "another caption");
  auto changed = pass(options());
  EXPECT_EQ(changed.cache_hits, 3);
  EXPECT_EQ(changed.cache_misses, 2);
  EXPECT_EQ(changed.stale_removed, 2);
  EXPECT_EQ(entries_on_disk(), 5u);

  // Another resolution: every entry is made again, the old ones go.
  auto resized = pass(options(128));
  EXPECT_EQ(resized.cache_misses, 5);
  EXPECT_EQ(resized.stale_removed, 5);
}

TEST_F(latent_cache_test, other_vae_weights_invalidate_every_entry) {
  SKIP_WITHOUT_TINY_SD();
  pass(options());
  // The VAE's weights with one bias changed: a copy replaces the link to the fixture.
  const auto weights = root_ / "pipeline" / "vae" / "diffusion_pytorch_model.safetensors";
  auto content = read_safetensors_file(weights);
  for (auto& t : content.tensors)
    if (t.name == "decoder.conv_out.bias") {
      float value;
      std::memcpy(&value, t.data.data(), sizeof value);
      value += 0.25f;
      std::memcpy(t.data.data(), &value, sizeof value);
    }
  fs::remove(weights);
  write_safetensors_file(weights, content);
  auto again = pass(options());
  EXPECT_EQ(again.cache_hits, 0);
  EXPECT_EQ(again.cache_misses, 5);
  EXPECT_EQ(again.stale_removed, 5);
}

TEST_F(latent_cache_test, a_damaged_entry_is_made_again) {
  SKIP_WITHOUT_TINY_SD();
  sd_example_set examples;
  pass(options(), &examples);
  const auto victim = examples.examples[2].cache_file;
  fs::resize_file(victim, fs::file_size(victim) / 2);
  auto again = pass(options());
  EXPECT_EQ(again.cache_hits, 4);
  EXPECT_EQ(again.cache_misses, 1);
  EXPECT_NO_THROW(read_latent_cache_entry(victim));
}

TEST_F(latent_cache_test, entries_hold_the_encoders_output_at_the_images_bucket) {
  SKIP_WITHOUT_TINY_SD();
  sd_example_set examples;
  pass(options(128, true), &examples);
  ASSERT_EQ(examples.count(), 5);
  const std::vector<bucket_shape> expected{{128, 128}, {192, 64}, {256, 64}, {64, 256},
                                           {128, 128}};
  for (size_t i = 0; i < 5; ++i) {
    const auto& bucket = examples.buckets[static_cast<size_t>(examples.examples[i].bucket)];
    EXPECT_EQ(bucket, expected[i]) << "image " << i;
    const auto entry = read_latent_cache_entry(examples.examples[i].cache_file);
    EXPECT_EQ(entry.width, bucket.width);
    EXPECT_EQ(entry.height, bucket.height);
    // The tiny VAE halves each side.
    EXPECT_EQ(entry.latent_shape, (std::vector<int64_t>{4, bucket.height / 2, bucket.width / 2}));
    EXPECT_EQ(entry.embedding_shape, (std::vector<int64_t>{77, 32}));
  }
  // Image 3 (32 x 128) encoded by hand gives the entry's values.
  sd_pipeline_options pipeline_options;
  pipeline_options.unet = false;
  auto pipeline = load_sd_pipeline(root_ / "pipeline", pipeline_options);
  const auto image = decode_image_file(root_ / "images" / "img3.png");
  auto pixels = fit_image_to(image, 64, 256, 3);
  const auto tensor = torch::from_blob(pixels.data(), {1, 3, 256, 64}, torch::kUInt8)
                        .to(torch::kFloat32) / 127.5 - 1.0;
  const auto latents = pipeline.encode_images(tensor)[0];
  const auto text = pipeline.encode_prompts({"picture number 3"})[0].contiguous();
  const auto entry = read_latent_cache_entry(examples.examples[3].cache_file);
  EXPECT_TRUE(torch::equal(
    torch::from_blob(const_cast<float*>(entry.latents.data()), latents.sizes()), latents));
  EXPECT_TRUE(torch::equal(
    torch::from_blob(const_cast<float*>(entry.embeddings.data()), text.sizes()), text));
}

TEST_F(latent_cache_test, without_the_cache_examples_keep_pixels_at_their_bucket) {
  SKIP_WITHOUT_TINY_SD();
  auto o = options(128, true);
  o.cache = false;
  sd_example_set examples;
  const auto report = pass(o, &examples);
  EXPECT_EQ(report.cache_misses + report.cache_hits, 0);
  EXPECT_FALSE(fs::exists(root_ / "cache"));
  ASSERT_EQ(examples.count(), 5);
  for (const auto& example : examples.examples) {
    const auto& bucket = examples.buckets[static_cast<size_t>(example.bucket)];
    EXPECT_TRUE(example.cache_file.empty());
    EXPECT_EQ(example.pixels.size(), size_t{3} * bucket.width * bucket.height);
  }
  EXPECT_EQ(examples.examples[0].caption, "picture number 0");
}

TEST_F(latent_cache_test, a_folder_without_captioned_images_is_refused) {
  SKIP_WITHOUT_TINY_SD();
  for (int i = 0; i < 5; ++i)
    fs::remove(root_ / "images" / ("img" + std::to_string(i) + ".txt"));
  try {
    pass(options());
    FAIL() << "no error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find((root_ / "images").string()), std::string::npos)
      << e.what();
  }
}

} // namespace
} // namespace ddactor
