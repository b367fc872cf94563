#pragma once
// ddactor's quality metric for class-conditional Fashion-MNIST models:
//
//   * Frechet distance between generated images and the whole test split (10,000 images) in the
//     128-d feature space of the cached feature classifier. The generated set is always
//     `num_samples` images, class-balanced (label i % 10), from a fixed seed, so numbers of
//     different runs compare; the same count of real training images gives the metric's floor.
//   * Class accuracy: how often the classifier recognises the class a sample was asked for.

#include <torch/torch.h>

#include "models/feature_classifier.hpp"
#include "models/frechet_distance.hpp"

namespace ddactor {

struct quality_report {
  double frechet_distance = 0;
  double class_accuracy = 0;
  int64_t samples = 0;
  int64_t reference_images = 0;
  /// The Frechet distance of `samples` real training images against the reference: the best a
  /// perfect generator can expect at this sample count.
  double real_data_floor = 0;
};

/// Labels 0..num_classes-1 repeated to `count` entries (class-balanced).
torch::Tensor balanced_labels(int64_t count, int64_t num_classes);

/// Classifier features of images (N, 1, 28, 28) in [-1, 1], in batches.
torch::Tensor classifier_features(feature_classifier& classifier, const torch::Tensor& images);

/// Scores generated images (with the labels they were conditioned on) against a reference set.
quality_report score_generated_images(feature_classifier& classifier, const torch::Tensor& images,
                                      const torch::Tensor& labels, const image_dataset& reference,
                                      const image_dataset& train_for_floor);

} // namespace ddactor
