#pragma once
// Maps a run file's [model], [data] and [train] sections onto the model and trainer options.

#include "config/run_config.hpp"
#include "models/diffusion_trainer.hpp"
#include "models/dit.hpp"
#include "models/router.hpp"
#include "models/sd/sd_trainer.hpp"

#include <memory>

namespace ddactor {

/// The DiT's shape; for a latent DiT (model.latent) still in pixels (latent_dit_options maps it).
dit_options make_dit_options(const run_config& config);
router_options make_router_options(const run_config& config);
trainer_settings make_trainer_settings(const run_config& config);
sd_trainer_options make_sd_trainer_options(const run_config& config);

/// Whether the run fine-tunes a Stable Diffusion UNet (model.pretrained without model.latent).
bool fine_tunes_sd_unet(const run_config& config);

/// What run.mode trains: the DiT ("train"; a Stable Diffusion UNet with model.pretrained, the
/// DiT on its latents with model.latent) or the DDM router ("router").
std::unique_ptr<model_trainer> make_model_trainer(const run_config& config,
                                                  trainer_settings settings);

} // namespace ddactor
