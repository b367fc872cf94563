#pragma once
// Loading the parts of a Decentralized Diffusion Model for inference: the router from
// <root>/router and expert k from <root>/expert-k (their newest readable checkpoints, EMA
// weights), with their shapes from the checkpoints' metadata.

#include <filesystem>
#include <vector>

#include "config/run_config.hpp"
#include "models/dit.hpp"
#include "models/router.hpp"

namespace ddactor {

/// The run config of expert k of the same DDM (its run folder is <root>/expert-k).
run_config expert_config(const run_config& config, int expert);
/// The run config of the DDM's router (its run folder is <root>/router).
run_config router_config(const run_config& config);

router load_router(const run_config& config);
dit load_expert(const run_config& config, int expert);

struct ddm_models {
  router routing{nullptr};
  std::vector<dit> experts;
};

/// The router and every expert (all local). Throws naming what is missing.
ddm_models load_ddm_models(const run_config& config);

} // namespace ddactor
