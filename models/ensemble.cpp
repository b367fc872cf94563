// DDM inference: routing weights and the ensemble velocity; see ensemble.hpp.
#include "models/ensemble.hpp"

namespace ddactor {

routing_strategy parse_routing(const std::string& name) {
  if (name == "top1")
    return routing_strategy::top1;
  if (name == "topk")
    return routing_strategy::topk;
  if (name == "full")
    return routing_strategy::full;
  throw std::invalid_argument("unknown routing strategy '" + name + "' (top1, topk or full)");
}

torch::Tensor routing_weights(const torch::Tensor& probabilities, routing_strategy strategy,
                              int64_t top_k) {
  auto k_all = probabilities.size(1);
  switch (strategy) {
    case routing_strategy::full:
    case routing_strategy::fixed:
      return probabilities / probabilities.sum(1, true).clamp_min(1e-12);
    case routing_strategy::top1:
      top_k = 1;
      [[fallthrough]];
    case routing_strategy::topk: {
      auto k = std::min(std::max<int64_t>(top_k, 1), k_all);
      auto [values, indices] = probabilities.topk(k, 1);
      auto weights = torch::zeros_like(probabilities);
      weights.scatter_(1, indices, values);
      return weights / weights.sum(1, true).clamp_min(1e-12);
    }
  }
  return probabilities;
}

torch::Tensor combine_velocities(const torch::Tensor& weights,
                                 const std::vector<torch::Tensor>& velocities) {
  torch::Tensor out;
  for (size_t k = 0; k < velocities.size(); ++k) {
    if (!velocities[k].defined())
      continue;
    auto shape = std::vector<int64_t>(static_cast<size_t>(velocities[k].dim()), 1);
    shape[0] = -1;
    auto term = weights.select(1, static_cast<int64_t>(k)).view(shape) * velocities[k];
    out = out.defined() ? out + term : term;
  }
  return out;
}

expert_function local_expert(dit model, double cfg_scale) {
  return [model, cfg_scale](const torch::Tensor& x, const torch::Tensor& t,
                            const dit_condition& cond) mutable {
    if (model->options().conditioning == "none")
      return model->forward(x, t, cond);
    return guided_velocity(model, cond, cfg_scale)(x, t);
  };
}

// The classes the router is conditioned on: the requested ones (null where the condition is
// null), or none for an unconditioned router or request.
torch::Tensor router_classes(const router& routing_model, const dit_condition& cond) {
  auto num_classes = routing_model->options().num_classes;
  if (num_classes == 0 || !cond.labels.defined())
    return {};
  if (!cond.is_null.defined())
    return cond.labels;
  return torch::where(cond.is_null, torch::full_like(cond.labels, num_classes), cond.labels);
}

velocity_field ensemble_velocity(router routing_model, std::vector<expert_function> experts,
                                 dit_condition cond, ensemble_options options,
                                 std::shared_ptr<std::set<int64_t>> unavailable) {
  if (!unavailable)
    unavailable = std::make_shared<std::set<int64_t>>();
  return [=](const torch::Tensor& x, const torch::Tensor& t) mutable {
    torch::NoGradGuard no_grad;
    auto k_all = static_cast<int64_t>(experts.size());
    torch::Tensor probabilities;
    if (options.strategy == routing_strategy::fixed) {
      probabilities = options.fixed_weights.to(x.device(), torch::kFloat32);
    } else {
      routing_model->eval();
      probabilities = routing_model->probabilities(x, t, router_classes(routing_model, cond));
    }
    if (probabilities.size(1) != k_all)
      throw std::invalid_argument("the router knows " + std::to_string(probabilities.size(1)) +
                                  " experts, the ensemble has " + std::to_string(k_all));
    // Route, run the experts each on its samples, and on an unavailable expert route again
    // without it (or fail, without fall-back).
    for (int attempt = 0; attempt <= k_all; ++attempt) {
      auto masked = probabilities.clone();
      for (auto k : *unavailable) {
        if (!options.fall_back)
          throw expert_unavailable(k, "and fall-back is off");
        masked.select(1, k).zero_();
      }
      if (masked.sum().item<double>() <= 0)
        throw std::runtime_error("no expert of the ensemble is available");
      // A sample whose selected experts all died needs one of the survivors.
      auto empty_rows = masked.sum(1).le(0);
      if (empty_rows.any().item<bool>())
        masked.index_put_({empty_rows},
                          torch::ones({k_all}, masked.options()) / static_cast<double>(k_all));
      for (auto k : *unavailable)
        masked.select(1, k).zero_();
      auto weights = routing_weights(masked, options.strategy, options.top_k);
      std::vector<torch::Tensor> velocities(static_cast<size_t>(k_all));
      bool failed = false;
      for (int64_t k = 0; k < k_all && !failed; ++k) {
        auto rows = weights.select(1, k).gt(0).nonzero().squeeze(1);
        if (rows.numel() == 0)
          continue;
        try {
          auto v_rows =
            experts[static_cast<size_t>(k)](x.index_select(0, rows), t.index_select(0, rows),
                                            cond.select(rows));
          velocities[static_cast<size_t>(k)] = torch::zeros_like(x).index_copy_(0, rows, v_rows);
        } catch (const expert_unavailable& e) {
          unavailable->insert(k);
          failed = true;
        }
      }
      if (!failed)
        return combine_velocities(weights, velocities);
    }
    throw std::runtime_error("no expert of the ensemble could answer");
  };
}

} // namespace ddactor
