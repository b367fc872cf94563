// Frechet distance and class accuracy of generated images; see quality_metric.hpp.
#include "models/quality_metric.hpp"

#include "runtime/data_order.hpp"

namespace ddactor {

torch::Tensor balanced_labels(int64_t count, int64_t num_classes) {
  return torch::arange(count, torch::kInt64).remainder(num_classes);
}

torch::Tensor classifier_features(feature_classifier& classifier, const torch::Tensor& images) {
  torch::NoGradGuard no_grad;
  classifier->eval();
  std::vector<torch::Tensor> parts;
  for (int64_t begin = 0; begin < images.size(0); begin += 1000)
    parts.push_back(classifier->features(images.slice(0, begin, begin + 1000)));
  return torch::cat(parts, 0);
}

quality_report score_generated_images(feature_classifier& classifier, const torch::Tensor& images,
                                      const torch::Tensor& labels, const image_dataset& reference,
                                      const image_dataset& train_for_floor) {
  torch::NoGradGuard no_grad;
  quality_report report;
  report.samples = images.size(0);
  report.reference_images = reference.count;
  auto reference_stats = fit_gaussian(classifier_features(classifier, dataset_images(reference)));
  auto generated_features = classifier_features(classifier, images);
  report.frechet_distance = frechet_distance(fit_gaussian(generated_features), reference_stats);
  auto predicted = classifier->fc2(torch::relu(generated_features)).argmax(1);
  report.class_accuracy = predicted.eq(labels).to(torch::kFloat64).mean().item<double>();
  // The floor: as many real training images, chosen by a fixed seed.
  auto order = epoch_permutation(train_for_floor.count, /*seed=*/7, /*epoch=*/0);
  order.resize(static_cast<size_t>(std::min<int64_t>(report.samples, train_for_floor.count)));
  auto real = dataset_images(train_for_floor.subset(order));
  report.real_data_floor =
    frechet_distance(fit_gaussian(classifier_features(classifier, real)), reference_stats);
  return report;
}

} // namespace ddactor
