// Run config -> model and trainer options; see model_config.hpp.
#include "models/model_config.hpp"

#include "models/device_transfer.hpp"
#include "models/latent_dit_trainer.hpp"
#include "models/router_trainer.hpp"

namespace ddactor {

dit_options make_dit_options(const run_config& config) {
  dit_options o;
  o.image_size = config.data.resolution;
  o.in_channels = config.data.channels;
  o.patch_size = config.model.patch_size;
  o.hidden_size = config.model.hidden_size;
  o.depth = config.model.depth;
  o.num_heads = config.model.num_heads;
  o.mlp_ratio = config.model.mlp_ratio;
  o.conditioning = config.model.conditioning;
  // A latent DiT's captions are the folder's text encoder's states; latent_dit_options maps
  // the remaining pixel shape onto the VAE's latent space.
  if (config.model.latent && o.conditioning == "caption")
    o.conditioning = "text_embedding";
  o.num_classes = config.model.num_classes;
  o.caption.width = config.model.hidden_size;
  o.caption.num_heads = config.model.num_heads;
  o.caption.layers = config.model.text_layers;
  o.caption.max_bytes = config.model.text_max_bytes;
  return o;
}

router_options make_router_options(const run_config& config) {
  router_options o;
  o.image_size = config.data.resolution;
  o.in_channels = config.data.channels;
  o.patch_size = config.ddm.router_patch_size;
  o.hidden_size = config.ddm.router_hidden_size;
  o.depth = config.ddm.router_depth;
  o.num_heads = config.ddm.router_heads;
  o.num_experts = config.ddm.num_experts;
  // Conditioned on the class like the experts; captioned data get an unconditioned router.
  o.num_classes = config.model.conditioning == "class" ? config.model.num_classes : 0;
  return o;
}

bool fine_tunes_sd_unet(const run_config& config) {
  return !config.model.pretrained.empty() && !config.model.latent;
}

sd_trainer_options make_sd_trainer_options(const run_config& config) {
  const auto& t = config.train;
  sd_trainer_options o;
  o.pretrained = config.model.pretrained;
  o.lora.rank = t.lora_rank;
  o.lora.alpha = t.lora_alpha;
  o.lora.targets = t.lora_targets;
  o.offset_noise = t.offset_noise;
  o.min_snr_gamma = t.min_snr_gamma;
  o.caption_dropout = t.caption_dropout;
  o.checkpoint_activations = t.checkpoint_activations;
  return o;
}

std::unique_ptr<model_trainer> make_model_trainer(const run_config& config,
                                                  trainer_settings settings) {
  if (config.run.mode == "router")
    return std::make_unique<router_trainer>(make_router_options(config), settings);
  if (fine_tunes_sd_unet(config))
    return std::make_unique<sd_trainer>(make_sd_trainer_options(config), settings);
  if (config.model.latent)
    return latent_dit_trainer::create(make_dit_options(config), config.model.pretrained,
                                      settings);
  return std::make_unique<diffusion_trainer>(make_dit_options(config), settings);
}

trainer_settings make_trainer_settings(const run_config& config) {
  const auto& t = config.train;
  trainer_settings s;
  s.lr = t.lr;
  s.warmup_steps = t.warmup_steps;
  s.grad_clip = t.grad_clip;
  s.ema_decay = t.ema_decay;
  s.logit_normal_mean = t.logit_normal_mean;
  s.logit_normal_std = t.logit_normal_std;
  s.condition_dropout = config.model.condition_dropout;
  s.adamw.beta1 = t.adam_beta1;
  s.adamw.beta2 = t.adam_beta2;
  s.adamw.eps = t.adam_eps;
  s.adamw.weight_decay = t.weight_decay;
  // Only averaged gradients arrive sparse; in the other modes the optimizer sees local gradients.
  s.adamw.sparse_catch_up = config.averaging.compression == "topk" &&
                            config.averaging.topk_catch_up && t.averaging == "gradients";
  s.seed = config.run.seed;
  s.noise_seed = config.run.seed;
  s.precision = parse_training_precision(t.precision);
  s.loss_scaling = s.precision == training_precision::fp16;
  s.micro_batch_size = config.data.micro_batch_size;
  s.device = parse_training_device(config.run.device);
  return s;
}

} // namespace ddactor
