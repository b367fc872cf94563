// Deterministic validation loss of a DiT; see validation_loss.hpp.
#include "models/validation_loss.hpp"

#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <numeric>
#include <string>
#include <vector>

#include "models/flow_matching.hpp"

namespace ddactor {

namespace {

void check_fits(const dit& model, const image_dataset& data, const validation_loss_options& o) {
  const auto& m = model->options();
  if (o.images <= 0)
    throw validation_loss_error("validation loss: images must be > 0, got " +
                                std::to_string(o.images));
  if (o.batch_size <= 0)
    throw validation_loss_error("validation loss: batch_size must be > 0, got " +
                                std::to_string(o.batch_size));
  if (data.count <= 0)
    throw validation_loss_error("validation loss: the data set is empty");
  if (data.channels != m.in_channels || data.height != m.image_size ||
      data.width != m.image_size)
    throw validation_loss_error(
      "validation loss: images are " + std::to_string(data.channels) + "x" +
      std::to_string(data.height) + "x" + std::to_string(data.width) + ", the model expects " +
      std::to_string(m.in_channels) + "x" + std::to_string(m.image_size) + "x" +
      std::to_string(m.image_size));
  if (m.conditioning == "class" && static_cast<int64_t>(data.labels.size()) != data.count)
    throw validation_loss_error("validation loss: a class-conditioned model needs labels");
  if (m.conditioning == "caption" && static_cast<int64_t>(data.captions.size()) != data.count)
    throw validation_loss_error("validation loss: a caption-conditioned model needs captions");
}

} // namespace

double validation_loss(dit& model, const image_dataset& data,
                       const validation_loss_options& options) {
  check_fits(model, data, options);
  const auto& m = model->options();
  const int64_t count = std::min(options.images, data.count);
  // All noise and times in two draws, before any batching, so the batch size cannot change them.
  auto generator = at::make_generator<at::CPUGeneratorImpl>(options.seed);
  auto noise = at::randn({count, data.channels, data.height, data.width}, generator,
                         torch::kFloat32);
  auto t = torch::sigmoid(at::randn({count}, generator, torch::kFloat32) *
                            options.logit_normal_std +
                          options.logit_normal_mean);

  torch::NoGradGuard no_grad;
  // Noise and times stay drawn on the host (the same figure on any device); each batch moves.
  const auto device = model->parameters().front().device();
  const bool was_training = model->is_training();
  model->eval();
  double total = 0;  // sum over images of their mean squared error
  for (int64_t begin = 0; begin < count; begin += options.batch_size) {
    const int64_t n = std::min(options.batch_size, count - begin);
    std::vector<int64_t> indices(static_cast<size_t>(n));
    std::iota(indices.begin(), indices.end(), begin);
    auto x0 = torch::empty({n, data.channels, data.height, data.width}, torch::kFloat32);
    images_to_float(data, indices,
                    std::span<float>(x0.data_ptr<float>(), static_cast<size_t>(x0.numel())));
    dit_condition cond;
    if (m.conditioning == "class") {
      cond.labels = torch::tensor(
        std::vector<int64_t>(data.labels.begin() + begin, data.labels.begin() + begin + n),
        torch::kInt64);
    } else if (m.conditioning == "caption") {
      cond.tokens = tokenize_captions(
        std::vector<std::string>(data.captions.begin() + begin, data.captions.begin() + begin + n),
        m.caption.max_bytes);
    }
    x0 = x0.to(device);
    auto eps = noise.narrow(0, begin, n).to(device);
    auto tb = t.narrow(0, begin, n).to(device);
    auto predicted = model->forward(interpolate_flow(x0, eps, tb), tb, cond.to(device));
    auto per_image = (predicted - flow_target(x0, eps)).pow(2).flatten(1).mean(1);
    total += per_image.to(torch::kFloat64).sum().item<double>();
  }
  model->train(was_training);
  return total / static_cast<double>(count);
}

} // namespace ddactor
