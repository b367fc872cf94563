// Loading a DDM's router and experts; see ddm_models.hpp.
#include "app/ddm_models.hpp"

#include <spdlog/spdlog.h>

#include "app/inference_model.hpp"
#include "models/checkpoint.hpp"
#include "models/router_trainer.hpp"
#include "runtime/checkpoint_files.hpp"
#include "runtime/safetensors.hpp"

namespace ddactor {

run_config expert_config(const run_config& config, int expert) {
  auto out = config;
  out.run.mode = "train";
  out.ddm.expert = expert;
  return out;
}

run_config router_config(const run_config& config) {
  auto out = config;
  out.run.mode = "router";
  out.ddm.expert = -1;
  return out;
}

router load_router(const run_config& config) {
  auto dir = router_config(config).run_dir();
  auto files = list_checkpoints(dir);
  for (auto it = files.rbegin(); it != files.rend(); ++it) {
    try {
      auto content = read_safetensors_file(it->path);
      router r(router_options_of(content.metadata));
      load_weights(content, *r, /*use_ema=*/true);
      r->eval();
      spdlog::info("router: {}", it->path.string());
      return r;
    } catch (const std::exception& e) {
      spdlog::warn("skipping router checkpoint {}: {}", it->path.string(), e.what());
    }
  }
  throw std::runtime_error("no router checkpoint in " + checkpoint_directory(dir).string() +
                           " (train it with run.mode = \"router\")");
}

dit load_expert(const run_config& config, int expert) {
  auto loaded = load_inference_model(expert_config(config, expert), {}, false);
  spdlog::info("expert {}: {} (step {})", expert, loaded.checkpoint.string(), loaded.step);
  return loaded.model;
}

ddm_models load_ddm_models(const run_config& config) {
  ddm_models out;
  out.routing = load_router(config);
  auto k = out.routing->options().num_experts;
  for (int64_t e = 0; e < k; ++e)
    out.experts.push_back(load_expert(config, static_cast<int>(e)));
  return out;
}

} // namespace ddactor
