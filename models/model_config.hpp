#pragma once
// Maps a run file's [model], [data] and [train] sections onto the model and trainer options.

#include "config/run_config.hpp"
#include "models/diffusion_trainer.hpp"
#include "models/dit.hpp"

namespace ddactor {

dit_options make_dit_options(const run_config& config);
trainer_settings make_trainer_settings(const run_config& config);

} // namespace ddactor
