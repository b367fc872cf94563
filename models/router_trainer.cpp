// The router's training loss; see router_trainer.hpp.
#include "models/router_trainer.hpp"

#include <stdexcept>

#include "models/flow_matching.hpp"
#include "models/slice_draws.hpp"

namespace ddactor {

namespace {

router build(const router_options& options, uint64_t seed) {
  torch::manual_seed(seed);
  return router(options);
}

int64_t number(const std::map<std::string, std::string>& m, const std::string& key) {
  auto it = m.find(key);
  if (it == m.end())
    throw std::runtime_error("router checkpoint metadata has no '" + key + "'");
  return std::stoll(it->second);
}

} // namespace

router_trainer::router_trainer(router_options options, trainer_settings settings)
  : model_trainer(settings),
    options_(options),
    model_(build(options_, settings.seed)),
    ema_model_(router(options_)) {
  attach_modules(model_.ptr(), ema_model_.ptr());
}

torch::Tensor router_trainer::batch_loss(const training_batch& batch, at::Generator& generator) {
  if (batch.channels != options_.in_channels || batch.height != options_.image_size ||
      batch.width != options_.image_size)
    throw std::invalid_argument("batch shape does not match the router");
  if (static_cast<int64_t>(batch.clusters.size()) != batch.count)
    throw std::invalid_argument("router training needs the cluster of every image");
  // Drawn for the whole batch, this slice keeping its rows (models/slice_draws.hpp).
  const slice_draws draws(batch);
  auto targets = on_device(torch::tensor(batch.clusters, torch::kInt64));
  if (targets.min().item<int64_t>() < 0 || targets.max().item<int64_t>() >= options_.num_experts)
    throw std::invalid_argument("a cluster is outside [0, num_experts)");
  torch::Tensor classes;
  if (options_.num_classes > 0) {
    if (static_cast<int64_t>(batch.labels.size()) != batch.count)
      throw std::invalid_argument("a class-conditioned router needs the class of every image");
    classes = on_device(torch::tensor(batch.labels, torch::kInt64));
    if (classes.min().item<int64_t>() < 0 || classes.max().item<int64_t>() >= options_.num_classes)
      throw std::invalid_argument("a class label is outside [0, num_classes)");
    auto dropped = on_device(draws.rows(at::rand({draws.total()}, generator, torch::kFloat32))
                               .lt(settings().condition_dropout));
    classes = torch::where(dropped, torch::full_like(classes, options_.num_classes), classes);
  }
  auto x0 = on_device(torch::from_blob(const_cast<float*>(batch.images.data()),
                                       {batch.count, batch.channels, batch.height, batch.width},
                                       torch::kFloat32));
  auto noise_shape = x0.sizes().vec();
  noise_shape[0] = draws.total();
  // Drawn on the host (see trainer_settings::device), then moved beside x0.
  auto noise = on_device(draws.rows(at::randn(noise_shape, generator, torch::kFloat32)));
  auto t = on_device(draws.rows(at::rand({draws.total()}, generator, torch::kFloat32)));
  return torch::cross_entropy_loss(model_->forward(interpolate_flow(x0, noise, t), t, classes),
                                   targets);
}

std::map<std::string, std::string> router_trainer::describe() const {
  const auto& o = options_;
  return {{"model.kind", "router"},
          {"model.image_size", std::to_string(o.image_size)},
          {"model.in_channels", std::to_string(o.in_channels)},
          {"model.patch_size", std::to_string(o.patch_size)},
          {"model.hidden_size", std::to_string(o.hidden_size)},
          {"model.depth", std::to_string(o.depth)},
          {"model.num_heads", std::to_string(o.num_heads)},
          {"model.mlp_ratio", std::to_string(o.mlp_ratio)},
          {"model.num_experts", std::to_string(o.num_experts)},
          {"model.num_classes", std::to_string(o.num_classes)}};
}

router_options router_options_of(const std::map<std::string, std::string>& m) {
  auto kind = m.find("model.kind");
  if (kind == m.end() || kind->second != "router")
    throw std::runtime_error("not a router checkpoint (model.kind is not 'router')");
  router_options o;
  o.image_size = number(m, "model.image_size");
  o.in_channels = number(m, "model.in_channels");
  o.patch_size = number(m, "model.patch_size");
  o.hidden_size = number(m, "model.hidden_size");
  o.depth = number(m, "model.depth");
  o.num_heads = number(m, "model.num_heads");
  o.num_experts = number(m, "model.num_experts");
  o.mlp_ratio = std::stod(m.at("model.mlp_ratio"));
  // Routers written before class conditioning have no entry: unconditioned.
  o.num_classes = m.count("model.num_classes") ? number(m, "model.num_classes") : 0;
  return o;
}

} // namespace ddactor
