#pragma once
// A Stable Diffusion pipeline with a run's trained weights, for sampling and export: the
// pretrained folder, then from a checkpoint of sd_trainer either its LoRA adapters (rank, alpha
// and targets from the checkpoint's metadata, attached to the UNet) or its whole UNet. The EMA
// weights are taken where the checkpoint has them, unless raw weights are asked for.
//
// A full fine-tune's checkpoint holds the UNet, its EMA and the optimizer moments (about 14 GB
// for SD 1.5): it is read tensor by tensor, never whole.

#include <filesystem>

#include "models/sd/low_rank_adapters.hpp"
#include "models/sd/sd_pipeline.hpp"
#include "models/sd/sd_trainer.hpp"

namespace ddactor {

struct sd_fine_tune {
  sd_pipeline pipeline;
  sd_trainer_options options;
  low_rank_adapters adapters{nullptr};  // LoRA: attached to pipeline.unet
  int64_t step = 0;
};

/// Loads `pretrained` and applies `checkpoint` (empty: nothing, the pretrained model as it is).
/// Throws std::runtime_error naming the file for a checkpoint that is not an SD fine-tune or does
/// not fit the folder's UNet.
sd_fine_tune load_sd_fine_tune(const std::filesystem::path& pretrained,
                               const std::filesystem::path& checkpoint, bool raw_weights);

/// Loads `pretrained` with the adapters of a LoRA file attached to its UNet (a run's
/// lora.safetensors, or one diffusers' training scripts wrote): read_lora_adapters.
sd_fine_tune load_sd_with_lora_file(const std::filesystem::path& pretrained,
                                    const std::filesystem::path& lora_file);

} // namespace ddactor
