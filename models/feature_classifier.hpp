#pragma once
// A small Fashion-MNIST classifier whose penultimate layer is the feature space of ddactor's
// quality metric (the role Inception-v3 plays for FID on natural images). ddactor trains it once,
// with a fixed seed, and caches it; `ddactor eval` then measures generated images in its features.
//
//   (N,1,28,28) -> conv3x3(16) -> conv3x3(32) -> pool -> conv3x3(64) -> pool -> fc(128) = features
//                                                                            -> fc(10)  = logits

#include <torch/torch.h>

#include <filesystem>
#include <functional>
#include <string>

#include "models/dataset_tensors.hpp"
#include "runtime/image_dataset.hpp"
#include "runtime/progress_meter.hpp"

namespace ddactor {

inline constexpr int64_t feature_classifier_dims = 128;

struct feature_classifier_impl : torch::nn::Module {
  feature_classifier_impl();

  /// Penultimate features (N, 128) for images in [-1, 1].
  torch::Tensor features(const torch::Tensor& images);
  /// Class logits (N, 10).
  torch::Tensor forward(const torch::Tensor& images);

  torch::nn::Conv2d conv1, conv2, conv3;
  torch::nn::Linear fc1, fc2;
};
TORCH_MODULE_IMPL(feature_classifier, feature_classifier_impl);

struct classifier_training_options {
  int epochs = 2;
  int batch_size = 128;
  double lr = 1e-3;
  uint64_t seed = 20240229;
  /// Reports (batches done, total); optional.
  progress_callback progress;
  /// Asked between batches: true stops with work_stopped.
  std::function<bool()> stop_requested;
};

/// Trains on `train` (labels needed); returns the accuracy on `test`.
double train_feature_classifier(feature_classifier& model, const image_dataset& train,
                                const image_dataset& test,
                                const classifier_training_options& options = {});

/// Accuracy of the classifier on labelled images.
double classifier_accuracy(feature_classifier& model, const image_dataset& data);

/// Loads the cached classifier from `cache_dir`, or trains and caches it. Logs what it does.
feature_classifier load_or_train_feature_classifier(
  const std::filesystem::path& cache_dir, const image_dataset& train, const image_dataset& test,
  const classifier_training_options& options = {});

} // namespace ddactor
