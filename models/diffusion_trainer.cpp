// One DiT replica's training loss; see diffusion_trainer.hpp.
#include "models/diffusion_trainer.hpp"

#include <stdexcept>

#include "models/flow_matching.hpp"
#include "models/slice_draws.hpp"

namespace ddactor {

namespace {

dit build(const dit_options& options, uint64_t seed) {
  torch::manual_seed(seed);
  return dit(options);
}

} // namespace

diffusion_trainer::diffusion_trainer(dit_options model_options, trainer_settings settings)
  : model_trainer(settings),
    model_options_(std::move(model_options)),
    model_(build(model_options_, settings.seed)),
    ema_model_(dit(model_options_)) {
  attach_modules(model_.ptr(), ema_model_.ptr());
}

dit_condition diffusion_trainer::condition_of(const training_batch& batch) const {
  dit_condition cond;
  if (model_options_.conditioning == "class") {
    if (static_cast<int64_t>(batch.labels.size()) != batch.count)
      throw std::invalid_argument("class-conditioned training needs one label per image");
    cond.labels = torch::tensor(batch.labels, torch::kInt64);
  } else if (model_options_.conditioning == "caption") {
    if (static_cast<int64_t>(batch.captions.size()) != batch.count)
      throw std::invalid_argument("caption-conditioned training needs one caption per image");
    cond.tokens = tokenize_captions(batch.captions, model_options_.caption.max_bytes);
  }
  return cond;
}

torch::Tensor diffusion_trainer::batch_loss(const training_batch& batch,
                                            at::Generator& generator) {
  if (batch.channels != model_options_.in_channels || batch.height != model_options_.image_size ||
      batch.width != model_options_.image_size)
    throw std::invalid_argument("batch shape does not match the model");
  // from_blob does not copy; the batch outlives this call.
  auto x0 = on_device(torch::from_blob(const_cast<float*>(batch.images.data()),
                                       {batch.count, batch.channels, batch.height, batch.width},
                                       torch::kFloat32));
  return flow_loss(x0, condition_of(batch).to(x0.device()), generator, batch);
}

torch::Tensor diffusion_trainer::flow_loss(const torch::Tensor& x0, dit_condition cond,
                                           at::Generator& generator, const training_batch& batch) {
  // Drawn for the node's whole batch (several trainers, micro-batches): each slice keeps its
  // rows, so an example gets the noise, time and dropout one trainer with the whole batch would
  // give it.
  const slice_draws draws(batch);
  const int64_t total = draws.total();
  auto noise_shape = x0.sizes().vec();
  noise_shape[0] = total;
  // Drawn on the host (see trainer_settings::device), then moved beside x0.
  auto noise = on_device(draws.rows(at::randn(noise_shape, generator, torch::kFloat32)));
  auto t = on_device(torch::sigmoid(draws.rows(at::randn({total}, generator, torch::kFloat32)) *
                                      settings_.logit_normal_std +
                                    settings_.logit_normal_mean));
  if (model_options_.conditioning != "none")
    cond.is_null = on_device(
      draws.rows(at::rand({total}, generator, torch::kFloat32)).lt(settings_.condition_dropout));
  auto prediction = model_->forward(interpolate_flow(x0, noise, t), t, cond);
  return flow_matching_loss(prediction, x0, noise);
}

std::map<std::string, std::string> diffusion_trainer::describe() const {
  const auto& o = model_options_;
  return {{"model.kind", "dit"},
          {"model.image_size", std::to_string(o.image_size)},
          {"model.in_channels", std::to_string(o.in_channels)},
          {"model.patch_size", std::to_string(o.patch_size)},
          {"model.hidden_size", std::to_string(o.hidden_size)},
          {"model.depth", std::to_string(o.depth)},
          {"model.num_heads", std::to_string(o.num_heads)},
          {"model.mlp_ratio", std::to_string(o.mlp_ratio)},
          {"model.conditioning", o.conditioning},
          {"model.num_classes", std::to_string(o.num_classes)},
          {"model.text_layers", std::to_string(o.caption.layers)},
          {"model.text_max_bytes", std::to_string(o.caption.max_bytes)},
          {"model.context_length", std::to_string(o.context_length)},
          {"model.context_width", std::to_string(o.context_width)}};
}

} // namespace ddactor
