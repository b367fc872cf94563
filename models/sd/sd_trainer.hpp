#pragma once
// The training of a pretrained Stable Diffusion UNet (model.pretrained) on top of model_trainer's
// flat-buffer arithmetic: a full fine-tune of the UNet, or LoRA adapters on its Linear layers
// (train.lora_rank > 0) with the UNet frozen. Either way the flat parameters, the optimizer, the
// EMA and a swarm's rounds hold only what is trained: the UNet's 860 M parameters (SD 1.5), or
// the adapters' few million.
//
// The loss is DDPM's (Ho et al. 2020) as diffusers' train_text_to_image.py computes it:
//
//   latents  x0: the batch's cached latents, or the frozen VAE's encoding of its images
//   text     c:  the batch's cached embeddings, or the frozen text encoder's; each row replaced
//                by the empty prompt's with probability train.caption_dropout (for CFG)
//   noise    e ~ N(0, I), plus train.offset_noise * N(0, 1) per image and channel (offset noise)
//   t        uniform over the scheduler's training timesteps
//   x_t      = sqrt(abar_t) x0 + sqrt(1 - abar_t) e
//   target   e (epsilon models) or v = sqrt(abar_t) e - sqrt(1 - abar_t) x0 (v_prediction),
//            as the folder's scheduler_config.json says
//   loss     mean over the batch of w_t * |unet(x_t, t, c) - target|^2 (mean over the latent),
//            w_t = 1, or with train.min_snr_gamma = g > 0 (Hang et al. 2023):
//            min(snr_t, g) / snr_t (epsilon) or min(snr_t, g) / (snr_t + 1) (v_prediction)
//
// The EMA (train.ema_decay > 0) is a copy of what is trained: of the adapters for LoRA (small),
// of the whole UNet for a full fine-tune (another 3.4 GB for SD 1.5). ema_decay = 0 keeps none;
// sampling and the exported model then use the trained weights.
//
// Outputs in other tools' formats (write_exports): LoRA adapters as <run dir>/lora.safetensors
// at every checkpoint and at the end (lora_file.hpp: diffusers' load_lora_weights reads it); a
// full fine-tune as a diffusers folder, <run dir>/diffusers/, at the end.
//
// Not thread-safe: one thread trains.

#include <torch/torch.h>

#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "models/model_trainer.hpp"
#include "models/sd/low_rank_adapters.hpp"
#include "models/sd/sd_pipeline.hpp"

namespace ddactor {

struct sd_trainer_options {
  std::filesystem::path pretrained;
  /// rank 0: full fine-tune; > 0: LoRA with these adapters.
  low_rank_adapter_options lora{.rank = 0};
  double offset_noise = 0.0;
  double min_snr_gamma = 0.0;
  double caption_dropout = 0.1;
  /// Activation checkpointing and chunked attention in the UNet (memory_saving.hpp).
  bool checkpoint_activations = false;

  bool uses_lora() const { return lora.rank > 0; }
};

/// What the trained part of an SD checkpoint is (from its metadata): for sampling and export.
/// Throws std::runtime_error when the metadata does not describe an SD training checkpoint.
sd_trainer_options sd_options_of_checkpoint(const std::map<std::string, std::string>& metadata);

/// The UNet memory options train.checkpoint_activations stands for.
memory_saving_options sd_memory_options(bool checkpoint_activations);

class sd_trainer : public model_trainer {
 public:
  /// Loads the pipeline from options.pretrained (throws std::runtime_error naming the file for a
  /// folder that does not fit) and builds what is trained.
  sd_trainer(sd_trainer_options options, trainer_settings settings);

  const sd_trainer_options& options() const { return options_; }
  sd_pipeline& pipeline() { return pipeline_; }
  /// The trained UNet, adapters attached in LoRA mode.
  unet2d_condition& unet() { return pipeline_.unet; }
  /// The adapters (LoRA mode only; null otherwise).
  low_rank_adapters& adapters() { return adapters_; }

  /// Runs `use` with the UNet as sampling sees it: with the EMA weights where there is an EMA
  /// (for LoRA the EMA adapters are swapped in for the call), else the trained ones.
  void with_sampling_unet(const std::function<void(unet2d_condition&)>& use);

  /// The empty prompt's embedding (1, 77, C): caption dropout's replacement.
  const torch::Tensor& empty_prompt_embedding() const { return empty_embedding_; }

  std::map<std::string, std::string> describe() const override;
  void write_exports(const std::filesystem::path& run_dir, export_moment moment) override;

 protected:
  torch::Tensor batch_loss(const training_batch& batch, at::Generator& generator) override;

 private:
  sd_trainer_options options_;
  sd_pipeline pipeline_;
  low_rank_adapters adapters_{nullptr};
  low_rank_adapters ema_adapters_{nullptr};
  unet2d_condition ema_unet_{nullptr};
  torch::Tensor empty_embedding_;
};

/// Writes `unet`'s weights into a diffusers folder at `destination` (replacing one that is
/// there, as a whole: the new folder is complete before the old one goes) with the other parts
/// of `source`.
void replace_diffusers_folder(const diffusers_folder& source, torch::nn::Module& unet,
                              const std::filesystem::path& destination);

} // namespace ddactor
