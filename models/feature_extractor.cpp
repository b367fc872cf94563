// The built-in pixel/PCA features and the TorchScript feature extractor; see feature_extractor.hpp.
// This is the one file that includes LibTorch's JIT headers (torch/script.h): they are heavy.
#include "models/feature_extractor.hpp"

#include <torch/script.h>

#include <spdlog/fmt/fmt.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <fstream>
#include <numeric>
#include <vector>

namespace ddactor {

namespace {

// ImageNet statistics of RGB values in [0, 1], what torchvision-style models are trained with.
constexpr std::array<float, 3> imagenet_mean = {0.485f, 0.456f, 0.406f};
constexpr std::array<float, 3> imagenet_std = {0.229f, 0.224f, 0.225f};

// Standard deviations below this make a pixel "constant" (e.g. an always-black corner): it is
// centred but not scaled, instead of being blown up from rounding noise.
constexpr double constant_below = 1e-6;

void check_request(const image_dataset& data, int64_t batch_size) {
  if (data.count <= 0) throw feature_extractor_error("features of an empty data set");
  if (batch_size < 1)
    throw feature_extractor_error("feature batch size must be >= 1, got " +
                                  std::to_string(batch_size));
}

// Images [begin, end) of `data` as (N, C, H, W) floats in [-1, 1].
torch::Tensor image_batch(const image_dataset& data, int64_t begin, int64_t end) {
  std::vector<int64_t> indices(static_cast<size_t>(end - begin));
  std::iota(indices.begin(), indices.end(), begin);
  auto batch = torch::empty({end - begin, data.channels, data.height, data.width}, torch::kFloat32);
  images_to_float(data, indices,
                  std::span<float>(batch.data_ptr<float>(), static_cast<size_t>(batch.numel())));
  return batch;
}

// The first line of a LibTorch message (the rest is a C++ backtrace or TorchScript source).
std::string first_line(const std::string& text) {
  const auto end = text.find('\n');
  return end == std::string::npos ? text : text.substr(0, end);
}

// What went wrong inside a TorchScript module: the interpreter's message opens with a generic
// line and a traceback, and ends with the error itself ("RuntimeError: Given groups=1, ...").
std::string interpreter_problem(const std::string& text) {
  if (text.find("Traceback of TorchScript") == std::string::npos) return first_line(text);
  auto end = text.find_last_not_of(" \n");
  if (end == std::string::npos) return first_line(text);
  const auto begin = text.rfind('\n', end);
  return text.substr(begin == std::string::npos ? 0 : begin + 1, end - (begin == std::string::npos ? 0 : begin + 1) + 1);
}

// FNV-1a over the module file, so that the assignment file records which weights made it.
std::string file_digest(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  uint64_t hash = 0xcbf29ce484222325ULL;
  std::vector<char> chunk(1 << 16);
  while (in.read(chunk.data(), static_cast<std::streamsize>(chunk.size())) || in.gcount() > 0)
    for (std::streamsize i = 0; i < in.gcount(); ++i) {
      hash ^= static_cast<unsigned char>(chunk[static_cast<size_t>(i)]);
      hash *= 0x100000001b3ULL;
    }
  char text[17];
  std::snprintf(text, sizeof text, "%016llx", static_cast<unsigned long long>(hash));
  return text;
}

}  // namespace

// --- Built-in: area-averaged pixels, standardised, PCA ---------------------------------------

pixel_pca_features::pixel_pca_features(int64_t dims) : dims_(dims) {
  if (dims < 1)
    throw feature_extractor_error("the built-in features need at least 1 dimension, got " +
                                  std::to_string(dims));
}

std::string pixel_pca_features::description() const {
  return "builtin: " + std::to_string(pooled_side) + "x" + std::to_string(pooled_side) +
         " area-averaged pixels per channel, standardised, PCA to " + std::to_string(dims_) +
         " dims";
}

torch::Tensor pixel_pca_features::image_features(const image_dataset& data, int64_t batch_size,
                                                const progress_callback& progress) {
  check_request(data, batch_size);
  torch::NoGradGuard no_grad;
  const int64_t values = data.channels * pooled_side * pooled_side;
  auto pooled = torch::empty({data.count, values}, torch::kFloat64);
  for (int64_t begin = 0; begin < data.count; begin += batch_size) {
    const int64_t end = std::min(data.count, begin + batch_size);
    // adaptive_avg_pool2d averages each output cell's window of input pixels: an area average
    // (windows overlap by a pixel where the side is not a multiple of 8).
    auto small = torch::adaptive_avg_pool2d(image_batch(data, begin, end),
                                            {pooled_side, pooled_side});
    pooled.slice(0, begin, end).copy_(small.reshape({end - begin, values}));
    if (progress) progress(end, data.count);
  }

  return standardised_principal_components(pooled, dims_);
}

torch::Tensor standardised_principal_components(const torch::Tensor& pooled, int64_t dims) {
  const int64_t count = pooled.size(0), values = pooled.size(1);
  // Standardise each value over the data set (double, so that the covariance of 60000 images
  // loses nothing to rounding).
  const auto mean = pooled.mean(0, true);
  auto centred = pooled - mean;
  auto deviation = centred.pow(2).mean(0, true).sqrt();
  deviation = torch::where(deviation < constant_below, torch::ones_like(deviation), deviation);
  const auto standardised = centred / deviation;

  // Principal components: eigenvectors of the covariance, largest eigenvalue first.
  const int64_t keep = std::min(dims, values);
  const double denominator = static_cast<double>(std::max<int64_t>(1, count - 1));
  const auto covariance = standardised.t().mm(standardised) / denominator;
  const auto [eigenvalues, eigenvectors] = torch::linalg_eigh(covariance, "L");
  auto components = eigenvectors.slice(1, values - keep, values).flip({1}).contiguous();
  // An eigenvector's sign is arbitrary (LAPACK may return either): make the entry of largest
  // magnitude positive (the first such entry on ties), so the features are the same every run.
  const auto largest = components.abs().argmax(0);
  const auto signs = components.gather(0, largest.unsqueeze(0)).sign();
  components = components * torch::where(signs == 0, torch::ones_like(signs), signs);
  return standardised.mm(components).to(torch::kFloat32).contiguous();
}

// --- TorchScript module from a file ----------------------------------------------------------

struct torchscript_features::loaded_module {
  torch::jit::Module module;
};

torchscript_features::torchscript_features(std::filesystem::path module_file, int resolution)
    : file_(std::move(module_file)), resolution_(resolution) {
  const std::string name = file_.string();
  if (resolution < 0)
    throw feature_extractor_error(name + ": the feature resolution must be >= 0, got " +
                                  std::to_string(resolution));
  std::error_code error;
  if (!std::filesystem::is_regular_file(file_, error))
    throw feature_extractor_error(
        name + ": no such TorchScript feature extractor (ddm.features must name a file saved "
               "with torch.jit.save; leave it empty for the built-in features)");
  try {
    module_ = std::make_unique<loaded_module>(loaded_module{torch::jit::load(name)});
  } catch (const c10::Error& e) {
    throw feature_extractor_error(name + ": not a TorchScript module that LibTorch " +
                                  std::string(TORCH_VERSION) + " can load: " +
                                  first_line(e.what_without_backtrace()));
  } catch (const std::exception& e) {
    throw feature_extractor_error(name + ": not a TorchScript module: " + first_line(e.what()));
  }
  module_->module.eval();
  file_digest_ = file_digest(file_);
}

torchscript_features::~torchscript_features() = default;

std::string torchscript_features::description() const {
  return "torchscript: " + file_.filename().string() + " (fnv1a " + file_digest_ + "), input " +
         (resolution_ > 0 ? std::to_string(resolution_) + "x" + std::to_string(resolution_)
                          : std::string("native size")) +
         ", RGB ImageNet-normalised, grey in [-1, 1]";
}

torch::Tensor torchscript_features::image_features(const image_dataset& data, int64_t batch_size,
                                                  const progress_callback& progress) {
  check_request(data, batch_size);
  const std::string name = file_.string();
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> parts;
  int64_t dims = -1;
  for (int64_t begin = 0; begin < data.count; begin += batch_size) {
    const int64_t end = std::min(data.count, begin + batch_size);
    auto input = image_batch(data, begin, end);
    if (resolution_ > 0 && (data.height != resolution_ || data.width != resolution_))
      input = torch::nn::functional::interpolate(
          input, torch::nn::functional::InterpolateFuncOptions()
                     .size(std::vector<int64_t>{resolution_, resolution_})
                     .mode(torch::kBilinear)
                     .align_corners(false));
    if (data.channels == 3) {
      const auto mean = torch::tensor(std::vector<float>(imagenet_mean.begin(), imagenet_mean.end()))
                            .view({1, 3, 1, 1});
      const auto std = torch::tensor(std::vector<float>(imagenet_std.begin(), imagenet_std.end()))
                           .view({1, 3, 1, 1});
      input = ((input + 1) / 2 - mean) / std;
    }
    const std::string shape_text = fmt::format("({}, {}, {}, {})", input.size(0), input.size(1),
                                               input.size(2), input.size(3));
    torch::jit::IValue output;
    try {
      output = module_->module.forward({input});
    } catch (const c10::Error& e) {
      throw feature_extractor_error(name + ": the feature extractor failed on images of shape " +
                                    shape_text + ": " +
                                    interpreter_problem(e.what_without_backtrace()));
    } catch (const std::exception& e) {  // torch::jit::JITException: an error raised in the module
      throw feature_extractor_error(name + ": the feature extractor failed on images of shape " +
                                    shape_text + ": " + interpreter_problem(e.what()));
    }
    if (output.isTuple() && !output.toTupleRef().elements().empty())
      output = output.toTupleRef().elements()[0];
    if (!output.isTensor())
      throw feature_extractor_error(name + ": the feature extractor returned a " +
                                    output.tagKind() + ", expected a tensor (N, d) or (N, d, ...)");
    auto features = output.toTensor();
    if (features.dim() < 2 || features.size(0) != end - begin)
      throw feature_extractor_error(name + ": the feature extractor returned shape " +
                                    c10::str(features.sizes()) + " for " +
                                    std::to_string(end - begin) +
                                    " images; expected (N, d) or (N, d, ...)");
    if (features.dim() > 2) {
      std::vector<int64_t> trailing(static_cast<size_t>(features.dim() - 2));
      std::iota(trailing.begin(), trailing.end(), 2);
      features = features.mean(trailing);
    }
    features = features.to(torch::kFloat32).contiguous();
    if (features.size(1) == 0)
      throw feature_extractor_error(name + ": the feature extractor returned 0 features per image");
    if (dims < 0) dims = features.size(1);
    if (features.size(1) != dims)
      throw feature_extractor_error(name + ": the feature extractor returned " +
                                    std::to_string(features.size(1)) + " dims, earlier batches " +
                                    std::to_string(dims));
    if (!torch::isfinite(features).all().item<bool>())
      throw feature_extractor_error(name + ": the feature extractor returned values that are not "
                                           "finite (NaN or infinity) for images " +
                                    std::to_string(begin) + " to " + std::to_string(end - 1));
    parts.push_back(features);
    if (progress) progress(end, data.count);
  }
  return torch::cat(parts, 0);
}

std::unique_ptr<feature_extractor> make_feature_extractor(const ddm_section& ddm) {
  if (ddm.features.empty()) return std::make_unique<pixel_pca_features>(ddm.feature_dims);
  return std::make_unique<torchscript_features>(ddm.features, ddm.features_resolution);
}

}  // namespace ddactor
