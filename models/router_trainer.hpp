#pragma once
// Training of the DDM router: cross-entropy of p(cluster | x_t, t, class) against each image's
// cluster (batch.clusters), the class (batch.labels) replaced by the null class with
// probability condition_dropout, with t uniform on [0, 1] -- the router is asked at every time of
// sampling -- and batches drawn from all clusters in proportion to their sizes, so that it
// learns the prior too.

#include "models/model_trainer.hpp"
#include "models/router.hpp"

namespace ddactor {

class router_trainer : public model_trainer {
 public:
  router_trainer(router_options options, trainer_settings settings);

  router& model() { return model_; }
  router& ema_model() { return ema_model_; }
  const router_options& options() const { return options_; }

  std::map<std::string, std::string> describe() const override;

 protected:
  torch::Tensor batch_loss(const training_batch& batch, at::Generator& generator) override;

 private:
  router_options options_;
  router model_;
  router ema_model_;
};

/// The router_options a checkpoint was written with (from its metadata).
router_options router_options_of(const std::map<std::string, std::string>& metadata);

} // namespace ddactor
