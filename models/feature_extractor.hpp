#pragma once
// Per-image feature vectors that `ddactor cluster` clusters into the experts' data (Decentralized
// Diffusion Models). Two kinds behind one interface:
//
//  - pixel_pca_features, the built-in: each image area-averaged to 8x8 per channel, flattened,
//    each of those 64 x C values standardised over the data set, then projected on the data set's
//    top principal components (eigenvectors of the covariance, in double, signs fixed so that the
//    largest component of each is positive). Deterministic, no training, no download. Why it is a
//    reasonable default: on small data sets like Fashion-MNIST the classes differ mostly by
//    silhouette and brightness (trousers, bags, sneakers, shirts), which an 8x8 average keeps and
//    pixel noise does not; PCA keeps the main modes of that variation and, without whitening,
//    preserves Euclidean distances in the kept subspace, so k-means on the features is k-means on
//    coarse standardised pixels at a fraction of the cost. It groups images by layout, not by
//    meaning: for natural images use a learned extractor.
//
//  - torchscript_features: a TorchScript module (e.g. an exported DINOv2) loaded from a file. It
//    receives (N, C, H, W) float images: resized (bilinear, align_corners = false) to
//    `resolution` when that is not 0, then for RGB normalised like ImageNet models expect
//    ((x - mean) / std on [0, 1] values, mean 0.485, 0.456, 0.406, std 0.229, 0.224, 0.225), for
//    grey images in [-1, 1] as ddactor's models see them. It returns (N, d), or (N, d, ...) which
//    is averaged over the trailing dimensions (spatial feature maps), or a tuple whose first
//    element is such a tensor. Runs on the CPU, in eval mode, without gradients.
//
// Errors (a missing or broken module file, an output of the wrong shape, non-finite features)
// throw feature_extractor_error naming the file. LibTorch's JIT headers stay in the .cpp.

#include <torch/torch.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>

#include "config/run_config.hpp"
#include "runtime/image_dataset.hpp"
#include "runtime/progress_meter.hpp"

namespace ddactor {

class feature_extractor_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class feature_extractor {
 public:
  virtual ~feature_extractor() = default;

  // (n x d) float32 features of every image of `data`, in order, computed `batch_size` (>= 1)
  // images at a time. n = data.count (> 0). `progress` hears (images done, n) after every batch
  // (and may throw work_stopped to end the work there).
  virtual torch::Tensor image_features(const image_dataset& data, int64_t batch_size,
                                       const progress_callback& progress = {}) = 0;

  // One line saying what produced the features (kept in the assignment file's metadata).
  virtual std::string description() const = 0;
};

class pixel_pca_features final : public feature_extractor {
 public:
  // Side of the area-averaged images.
  static constexpr int64_t pooled_side = 8;

  // `dims` principal components are kept (at most 64 x channels: fewer when the images have
  // fewer values).
  explicit pixel_pca_features(int64_t dims);

  torch::Tensor image_features(const image_dataset& data, int64_t batch_size,
                               const progress_callback& progress = {}) override;
  std::string description() const override;

 private:
  int64_t dims_;
};

class torchscript_features final : public feature_extractor {
 public:
  // Loads the module now; throws feature_extractor_error naming the file if it is missing or no
  // TorchScript module. `resolution` 0 keeps the images' size.
  torchscript_features(std::filesystem::path module_file, int resolution);
  ~torchscript_features() override;

  torch::Tensor image_features(const image_dataset& data, int64_t batch_size,
                               const progress_callback& progress = {}) override;
  std::string description() const override;

 private:
  struct loaded_module;  // torch::jit::Module, kept out of this header
  std::unique_ptr<loaded_module> module_;
  std::filesystem::path file_;
  int resolution_;
  std::string file_digest_;
};

// The built-in's last part, for any per-image values: `pooled` (n x v, float64) with each value
// standardised over the n images, projected on their top `dims` principal components (at most
// v), signs fixed as above. Returns (n x min(dims, v)) float32.
torch::Tensor standardised_principal_components(const torch::Tensor& pooled, int64_t dims);

// The extractor a [ddm] section asks for: TorchScript when ddm.features names a file, else the
// built-in with ddm.feature_dims components.
std::unique_ptr<feature_extractor> make_feature_extractor(const ddm_section& ddm);

}  // namespace ddactor
