// Tests of the feature extractors: the built-in pixel/PCA features (shape, decorrelated
// components in decreasing variance, determinism, batch-size independence, clamped dimensions,
// constant images, structure they keep), and TorchScript modules made by
// tests/tools/make_feature_module.py (resizing, ImageNet normalisation, pooling of feature maps,
// tuple outputs) against the outputs PyTorch computed, plus the errors for missing, broken and
// misbehaving modules.
#include "models/feature_extractor.hpp"

#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <random>

#include "runtime/safetensors.hpp"

namespace ddactor {
namespace {

namespace fs = std::filesystem;

// Images of two kinds, with noise: a bright left half or a bright bottom half.
image_dataset two_kinds(int count, int channels, int side, uint32_t seed) {
  std::mt19937 random(seed);
  std::uniform_int_distribution<int> noise(-30, 30);
  image_dataset data;
  data.count = count;
  data.channels = channels;
  data.height = data.width = side;
  for (int i = 0; i < count; ++i) {
    data.labels.push_back(i % 2);
    for (int c = 0; c < channels; ++c)
      for (int y = 0; y < side; ++y)
        for (int x = 0; x < side; ++x) {
          const bool bright = i % 2 == 0 ? x < side / 2 : y >= side / 2;
          data.pixels.push_back(static_cast<uint8_t>(std::clamp((bright ? 200 : 40) + noise(random), 0, 255)));
        }
  }
  return data;
}

TEST(pixel_pca_features, components_are_decorrelated_in_decreasing_variance) {
  const auto data = two_kinds(300, 1, 28, 1);
  pixel_pca_features extractor(16);
  const auto features = extractor.image_features(data, 64);
  ASSERT_EQ(features.sizes(), (std::vector<int64_t>{300, 16}));
  EXPECT_EQ(features.dtype(), torch::kFloat32);
  const auto f = features.to(torch::kFloat64);
  // Zero mean; covariance diagonal with decreasing variances.
  EXPECT_LT(f.mean(0).abs().max().item<double>(), 1e-5);
  const auto covariance = f.t().mm(f) / 299.0;
  const auto variances = covariance.diagonal();
  const auto off_diagonal = covariance - torch::diag(variances);
  EXPECT_LT(off_diagonal.abs().max().item<double>(), 1e-4 * variances[0].item<double>());
  for (int64_t j = 1; j < 16; ++j)
    EXPECT_GE(variances[j - 1].item<double>(), variances[j].item<double>() - 1e-9) << j;
  // The two kinds are the main variation: the first component separates them.
  const auto first = features.select(1, 0);
  const double sign = first[0].item<float>() > 0 ? 1 : -1;
  for (int i = 0; i < 300; ++i)
    EXPECT_GT(sign * first[i].item<float>() * (i % 2 == 0 ? 1 : -1), 0) << i;
  EXPECT_EQ(extractor.description(),
            "builtin: 8x8 area-averaged pixels per channel, standardised, PCA to 16 dims");
}

TEST(pixel_pca_features, deterministic_and_independent_of_the_batch_size) {
  const auto data = two_kinds(97, 3, 20, 2);
  pixel_pca_features extractor(32);
  const auto a = extractor.image_features(data, 97);
  const auto b = extractor.image_features(data, 97);
  const auto c = extractor.image_features(data, 10);
  ASSERT_EQ(a.sizes(), (std::vector<int64_t>{97, 32}));
  EXPECT_TRUE(torch::equal(a, b));
  EXPECT_TRUE(torch::equal(a, c));
}

// 16x16 images whose regions of 32, 16, 12 and 4 pooled cells (left half; top right; rows 8-13
// and 14-15 of the bottom right) each follow an independent random brightness: the covariance of
// the pooled, standardised pixels has four clearly distinct leading eigenvalues.
image_dataset four_regions(int count, uint32_t seed) {
  std::mt19937 random(seed);
  std::uniform_real_distribution<float> factor(-1.f, 1.f);
  std::uniform_int_distribution<int> noise(-3, 3);
  image_dataset data;
  data.count = count;
  data.height = data.width = 16;
  for (int i = 0; i < count; ++i) {
    const float f[4] = {factor(random), factor(random), factor(random), factor(random)};
    for (int y = 0; y < 16; ++y)
      for (int x = 0; x < 16; ++x) {
        const int region = x < 8 ? 0 : y < 8 ? 1 : y < 14 ? 2 : 3;
        data.pixels.push_back(static_cast<uint8_t>(128 + 100 * f[region] + noise(random)));
      }
  }
  return data;
}

TEST(pixel_pca_features, signs_are_fixed_so_the_largest_loading_is_positive) {
  // Negating every image around mid-grey negates the standardised data but leaves its covariance
  // (up to rounding): the eigen-solver may return either sign for each component, and only the
  // sign rule makes the features of the negated data the negation of the original's.
  auto data = four_regions(200, 3);
  auto flipped = data;
  for (auto& p : flipped.pixels) p = static_cast<uint8_t>(255 - p);
  pixel_pca_features extractor(4);
  const auto a = extractor.image_features(data, 50);
  const auto b = extractor.image_features(flipped, 50);
  // Features are the standardised data times the components; flipping the data negates the
  // standardised data, and the components (fixed by their largest loading) stay: b = -a.
  EXPECT_LT((a + b).abs().max().item<float>(), 1e-3 * a.abs().max().item<float>());
}

TEST(pixel_pca_features, dims_are_capped_by_the_pooled_values_and_constant_images_are_zero) {
  const auto data = two_kinds(40, 1, 8, 4);
  EXPECT_EQ(pixel_pca_features(1000).image_features(data, 16).size(1), 64);
  image_dataset constant = data;
  std::fill(constant.pixels.begin(), constant.pixels.end(), 77);
  const auto features = pixel_pca_features(5).image_features(constant, 16);
  EXPECT_TRUE(torch::isfinite(features).all().item<bool>());
  EXPECT_EQ(features.abs().max().item<float>(), 0.f);
  EXPECT_THROW(pixel_pca_features(0), feature_extractor_error);
  EXPECT_THROW(pixel_pca_features(4).image_features(data, 0), feature_extractor_error);
  EXPECT_THROW(pixel_pca_features(4).image_features(image_dataset{}, 8), feature_extractor_error);
}

TEST(make_feature_extractor, picks_the_builtin_unless_a_file_is_named) {
  ddm_section ddm;
  ddm.feature_dims = 7;
  EXPECT_NE(dynamic_cast<pixel_pca_features*>(make_feature_extractor(ddm).get()), nullptr);
  ddm.features = "/nonexistent/dino.pt";
  try {
    make_feature_extractor(ddm);
    FAIL() << "no error for a missing module";
  } catch (const feature_extractor_error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/dino.pt: no such TorchScript"),
              std::string::npos)
        << e.what();
  }
}

// --- TorchScript modules made by PyTorch ---------------------------------------------------

class torchscript_features_test : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (std::system("/usr/bin/python3 -c 'import torch' >/dev/null 2>&1") != 0) return;
    dir_ = new fs::path(fs::temp_directory_path() /
                        ("ddactor_feature_extractor_test-" + std::to_string(::getpid())));
    fs::remove_all(*dir_);
    const auto script = fs::path(DDACTOR_TEST_DATA_DIR).parent_path() / "tools" /
                        "make_feature_module.py";
    const std::string command =
        "/usr/bin/python3 '" + script.string() + "' '" + dir_->string() + "'";
    made_ = std::system(command.c_str()) == 0;
  }
  static void TearDownTestSuite() {
    if (dir_) fs::remove_all(*dir_);
    delete dir_;
    dir_ = nullptr;
  }
  void SetUp() override {
    if (!dir_) GTEST_SKIP() << "/usr/bin/python3 cannot import torch";
    ASSERT_TRUE(made_) << "tests/tools/make_feature_module.py failed";
    expected_ = read_safetensors_file(*dir_ / "expected.safetensors");
  }

  image_dataset images(const std::string& name) const {
    const auto* tensor = expected_.find(name);
    image_dataset data;
    data.count = tensor->shape[0];
    data.channels = static_cast<int>(tensor->shape[1]);
    data.height = static_cast<int>(tensor->shape[2]);
    data.width = static_cast<int>(tensor->shape[3]);
    data.pixels.resize(tensor->data.size());
    std::memcpy(data.pixels.data(), tensor->data.data(), tensor->data.size());
    return data;
  }

  torch::Tensor expected(const std::string& name) const {
    const auto* tensor = expected_.find(name);
    return torch::from_blob(const_cast<std::byte*>(tensor->data.data()), tensor->shape,
                            torch::kFloat32)
        .clone();
  }

  static fs::path module(const std::string& name) { return *dir_ / name; }

  static inline fs::path* dir_ = nullptr;
  static inline bool made_ = false;
  safetensors_content expected_;
};

TEST_F(torchscript_features_test, rgb_maps_are_resized_normalised_and_pooled_like_pytorch) {
  torchscript_features extractor(module("rgb_maps.pt"), 16);
  const auto data = images("rgb_images");
  for (int64_t batch : {1, 4, 6}) {
    const auto features = extractor.image_features(data, batch);
    const auto want = expected("rgb_expected");
    ASSERT_EQ(features.sizes(), want.sizes());
    EXPECT_TRUE(torch::allclose(features, want, 1e-5, 1e-5))
        << "batch " << batch << ": largest difference "
        << (features - want).abs().max().item<float>();
  }
  const auto description = extractor.description();
  EXPECT_NE(description.find("torchscript: rgb_maps.pt (fnv1a "), std::string::npos)
      << description;
  EXPECT_NE(description.find("input 16x16"), std::string::npos) << description;
}

TEST_F(torchscript_features_test, grey_images_go_in_at_native_size_in_minus_one_to_one) {
  ddm_section ddm;
  ddm.features = module("grey_flat.pt");
  const auto extractor = make_feature_extractor(ddm);
  const auto features = extractor->image_features(images("grey_images"), 2);
  const auto want = expected("grey_expected");
  ASSERT_EQ(features.sizes(), want.sizes());
  EXPECT_TRUE(torch::allclose(features, want, 1e-5, 1e-5))
      << (features - want).abs().max().item<float>();
}

TEST_F(torchscript_features_test, a_tuple_output_uses_its_first_element) {
  torchscript_features extractor(module("tuple_out.pt"), 0);
  const auto features = extractor.image_features(images("grey_images"), 3);
  const auto want = expected("tuple_expected");
  ASSERT_EQ(features.sizes(), want.sizes());
  EXPECT_TRUE(torch::allclose(features, want, 1e-6, 1e-6));
}

std::string error_of(const std::function<void()>& call) {
  try {
    call();
  } catch (const feature_extractor_error& e) {
    return e.what();
  }
  return "";
}

TEST_F(torchscript_features_test, wrong_outputs_and_wrong_inputs_are_refused_naming_the_file) {
  const auto scalar = module("scalar_out.pt");
  auto message = error_of(
      [&] { torchscript_features(scalar, 0).image_features(images("grey_images"), 5); });
  EXPECT_NE(message.find(scalar.string() + ": the feature extractor returned shape [] for 5 "
                                           "images"),
            std::string::npos)
      << message;
  // RGB images into a grey module: the module's own error, with the file and the input shape.
  const auto grey = module("grey_flat.pt");
  message = error_of([&] { torchscript_features(grey, 0).image_features(images("rgb_images"), 6); });
  EXPECT_NE(message.find(grey.string() + ": the feature extractor failed on images of shape "
                                         "(6, 3, 12, 12): RuntimeError: Given groups=1"),
            std::string::npos)
      << message;
}

TEST_F(torchscript_features_test, broken_and_missing_files_are_refused_naming_the_file) {
  const auto broken = *dir_ / "broken.pt";
  std::ofstream(broken, std::ios::binary) << "PK\x03\x04 this is not a TorchScript archive";
  auto message = error_of([&] { torchscript_features(broken, 0); });
  EXPECT_NE(message.find(broken.string() + ": not a TorchScript module"), std::string::npos)
      << message;
  // A truncated real module.
  const auto truncated = *dir_ / "truncated.pt";
  {
    std::ifstream in(module("grey_flat.pt"), std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::ofstream(truncated, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size() / 2));
  }
  message = error_of([&] { torchscript_features(truncated, 0); });
  EXPECT_NE(message.find(truncated.string() + ": not a TorchScript module"), std::string::npos)
      << message;
  message = error_of([&] { torchscript_features(*dir_ / "missing.pt", 0); });
  EXPECT_NE(message.find((*dir_ / "missing.pt").string() + ": no such TorchScript feature "
                                                            "extractor"),
            std::string::npos)
      << message;
  message = error_of([&] { torchscript_features(*dir_, 0); });
  EXPECT_NE(message.find("no such TorchScript feature extractor"), std::string::npos) << message;
}

}  // namespace
}  // namespace ddactor
