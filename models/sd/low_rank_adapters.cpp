// Choosing LoRA sites, building the adapters and attaching them; see low_rank_adapters.hpp.
#include "models/sd/low_rank_adapters.hpp"

#include <map>
#include <memory>
#include <stdexcept>

namespace ddactor {

namespace {

bool selects(const std::string& name, const std::string& target) {
  return name == target ||
         (name.size() > target.size() && name.ends_with(target) &&
          name[name.size() - target.size() - 1] == '.');
}

std::vector<std::string> split_path(const std::string& path) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (true) {
    const auto dot = path.find('.', start);
    parts.push_back(path.substr(start, dot == std::string::npos ? std::string::npos : dot - start));
    if (dot == std::string::npos)
      return parts;
    start = dot + 1;
  }
}

// The adaptable layer at `path` in `model`.
adaptable_linear_impl& layer_at(torch::nn::Module& model, const std::string& path) {
  for (const auto& item : model.named_modules()) {
    if (item.key() != path)
      continue;
    if (auto* layer = dynamic_cast<adaptable_linear_impl*>(item.value().get()))
      return *layer;
    break;
  }
  throw std::invalid_argument("the model has no adaptable Linear layer '" + path + "'");
}

// A plain module that only groups children, so that adapter names mirror the model's paths.
struct name_node_impl : torch::nn::Module {};

} // namespace

const std::vector<std::string>& default_lora_targets() {
  static const std::vector<std::string> targets = {"to_q", "to_k", "to_v", "to_out.0"};
  return targets;
}

std::vector<adapter_site> find_adapter_sites(torch::nn::Module& model,
                                             const std::vector<std::string>& targets) {
  std::vector<adapter_site> sites;
  std::vector<bool> used(targets.size(), false);
  for (const auto& item : model.named_modules()) {
    const auto* layer = dynamic_cast<const adaptable_linear_impl*>(item.value().get());
    if (layer == nullptr)
      continue;
    bool selected = false;
    for (size_t i = 0; i < targets.size(); ++i)
      if (selects(item.key(), targets[i])) {
        used[i] = true;
        selected = true;
      }
    if (selected)
      sites.push_back({item.key(), layer->options.in_features(), layer->options.out_features()});
  }
  for (size_t i = 0; i < targets.size(); ++i)
    if (!used[i])
      throw std::invalid_argument(
        "LoRA target \"" + targets[i] +
        "\" names no Linear layer that can take an adapter (those of the UNet's transformer "
        "blocks: to_q, to_k, to_v, to_out.0, ff.net.0.proj, ff.net.2, and proj_in, proj_out "
        "where use_linear_projection is true)");
  return sites;
}

low_rank_adapters_impl::low_rank_adapters_impl(std::vector<adapter_site> sites, int64_t rank,
                                               double alpha)
  : sites_(std::move(sites)), rank_(rank), alpha_(alpha) {
  // Intermediate nodes by path prefix, so that siblings share their parents.
  std::map<std::string, std::shared_ptr<torch::nn::Module>> nodes;
  for (const auto& site : sites_) {
    torch::nn::Module* parent = this;
    std::string prefix;
    for (const auto& part : split_path(site.path)) {
      prefix += (prefix.empty() ? "" : ".") + part;
      auto& node = nodes[prefix];
      if (!node)
        node = parent->register_module(part, std::make_shared<name_node_impl>());
      parent = node.get();
    }
    adapters_.push_back(parent->register_module(
      "lora", low_rank_adapter(site.in_features, site.out_features, rank, alpha)));
  }
}

void low_rank_adapters_impl::attach_to(torch::nn::Module& model) {
  for (size_t i = 0; i < sites_.size(); ++i) {
    auto& layer = layer_at(model, sites_[i].path);
    if (layer.options.in_features() != sites_[i].in_features ||
        layer.options.out_features() != sites_[i].out_features)
      throw std::invalid_argument("layer '" + sites_[i].path + "' does not have the adapter's shape");
    layer.attach(adapters_[i]);
  }
}

void low_rank_adapters_impl::merge_into(torch::nn::Module& model) const {
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < sites_.size(); ++i) {
    auto& layer = layer_at(model, sites_[i].path);
    if (layer.adapter())
      throw std::invalid_argument("layer '" + sites_[i].path + "' has an attached adapter");
    const auto& adapter = adapters_[i];
    layer.weight.add_(torch::matmul(adapter->up->weight, adapter->down->weight) *
                      adapter->scale());
  }
}

void low_rank_adapters_impl::detach_from(torch::nn::Module& model) {
  for (const auto& site : sites_)
    layer_at(model, site.path).detach();
}

} // namespace ddactor
