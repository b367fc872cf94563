// The Fashion-MNIST feature classifier; see feature_classifier.hpp.
#include "models/feature_classifier.hpp"

#include <spdlog/spdlog.h>

#include <ATen/CPUGeneratorImpl.h>


#include "models/checkpoint.hpp"
#include "runtime/safetensors.hpp"

namespace ddactor {

namespace {

// Bump when the architecture or its training changes, so stale caches are not reused.
constexpr const char* cache_file_name = "fashion_mnist_classifier_v1.safetensors";

torch::nn::Conv2d conv3x3(int64_t in, int64_t out) {
  return torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, 3).padding(1));
}

} // namespace

feature_classifier_impl::feature_classifier_impl()
  : conv1(register_module("conv1", conv3x3(1, 16))),
    conv2(register_module("conv2", conv3x3(16, 32))),
    conv3(register_module("conv3", conv3x3(32, 64))),
    fc1(register_module("fc1", torch::nn::Linear(64 * 7 * 7, feature_classifier_dims))),
    fc2(register_module("fc2", torch::nn::Linear(feature_classifier_dims, 10))) {}

torch::Tensor feature_classifier_impl::features(const torch::Tensor& images) {
  auto x = torch::relu(conv1(images));
  x = torch::max_pool2d(torch::relu(conv2(x)), 2);
  x = torch::max_pool2d(torch::relu(conv3(x)), 2);
  return fc1(x.flatten(1));
}

torch::Tensor feature_classifier_impl::forward(const torch::Tensor& images) {
  return fc2(torch::relu(features(images)));
}

double classifier_accuracy(feature_classifier& model, const image_dataset& data) {
  torch::NoGradGuard no_grad;
  model->eval();
  auto images = dataset_images(data);
  auto labels = torch::tensor(data.labels, torch::kInt64);
  int64_t correct = 0;
  for (int64_t begin = 0; begin < data.count; begin += 1000) {
    auto end = std::min(data.count, begin + 1000);
    auto predicted = model->forward(images.slice(0, begin, end)).argmax(1);
    correct += predicted.eq(labels.slice(0, begin, end)).sum().item<int64_t>();
  }
  return data.count > 0 ? static_cast<double>(correct) / static_cast<double>(data.count) : 0.0;
}

double train_feature_classifier(feature_classifier& model, const image_dataset& train,
                                const image_dataset& test,
                                const classifier_training_options& options) {
  if (train.labels.empty() || train.channels != 1 || train.height != 28 || train.width != 28)
    throw std::invalid_argument("the feature classifier trains on labelled 28x28 grey images");
  auto generator = at::make_generator<at::CPUGeneratorImpl>(options.seed);
  auto images = dataset_images(train);
  auto labels = torch::tensor(train.labels, torch::kInt64);
  torch::optim::Adam optimizer(model->parameters(), torch::optim::AdamOptions(options.lr));
  const int64_t batches_per_epoch = (train.count + options.batch_size - 1) / options.batch_size;
  int64_t batches_done = 0;
  for (int epoch = 0; epoch < options.epochs; ++epoch) {
    model->train();
    auto order = at::randperm(train.count, generator, torch::kInt64);
    double loss_sum = 0;
    int64_t batches = 0;
    for (int64_t begin = 0; begin < train.count; begin += options.batch_size) {
      auto idx = order.slice(0, begin, std::min(train.count, begin + options.batch_size));
      optimizer.zero_grad();
      auto loss = torch::cross_entropy_loss(model->forward(images.index_select(0, idx)),
                                            labels.index_select(0, idx));
      loss.backward();
      optimizer.step();
      loss_sum += loss.item<double>();
      ++batches;
      if (options.progress)
        options.progress(++batches_done, batches_per_epoch * options.epochs);
      if (options.stop_requested && options.stop_requested())
        throw work_stopped();
    }
    spdlog::info("feature classifier epoch {}/{}: loss {:.4f}", epoch + 1, options.epochs,
                 loss_sum / std::max<int64_t>(batches, 1));
  }
  return classifier_accuracy(model, test);
}

feature_classifier load_or_train_feature_classifier(const std::filesystem::path& cache_dir,
                                                    const image_dataset& train,
                                                    const image_dataset& test,
                                                    const classifier_training_options& options) {
  auto path = cache_dir / cache_file_name;
  feature_classifier model;
  if (std::filesystem::exists(path)) {
    try {
      auto content = read_safetensors_file(path);
      torch::NoGradGuard no_grad;
      for (auto& item : model->named_parameters()) {
        const auto* stored = content.find(item.key());
        if (stored == nullptr)
          throw std::runtime_error("missing tensor " + item.key());
        auto value = from_stored_tensor(*stored);
        if (value.sizes() != item.value().sizes())
          throw std::runtime_error("wrong shape for " + item.key());
        item.value().copy_(value);
      }
      model->eval();
      spdlog::info("feature classifier loaded from {}", path.string());
      return model;
    } catch (const std::exception& e) {
      spdlog::warn("cached feature classifier {} unusable ({}); training a new one",
                   path.string(), e.what());
    }
  }
  spdlog::info("training the Fashion-MNIST feature classifier once (cached in {})",
               cache_dir.string());
  torch::manual_seed(options.seed);
  model = feature_classifier();
  double accuracy = train_feature_classifier(model, train, test, options);
  spdlog::info("feature classifier test accuracy: {:.2f}%", 100.0 * accuracy);
  safetensors_content content;
  for (const auto& item : model->named_parameters())
    content.tensors.push_back(to_stored_tensor(item.key(), item.value()));
  content.metadata["test_accuracy"] = std::to_string(accuracy);
  std::filesystem::create_directories(cache_dir);
  write_safetensors_file(path, content);
  model->eval();
  return model;
}

} // namespace ddactor
