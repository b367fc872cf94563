#pragma once
// LoRA adapters of an SD UNet as a safetensors file that diffusers reads with
// `StableDiffusionPipeline.load_lora_weights(file)`, and back.
//
// The key form is the one diffusers v0.25.1's own training scripts write (save_lora_weights of
// convert_state_dict_to_diffusers(get_peft_model_state_dict(unet))), checked in the v0.25.1
// sources (src/diffusers/loaders/lora.py, loaders/unet.py, utils/state_dict_utils.py):
//
//   unet.<layer path>.lora.down.weight   A, (rank, in_features)
//   unet.<layer path>.lora.up.weight     B, (out_features, rank), scale already applied
//
// load_lora_weights accepts it both ways v0.25.1 can run: with the PEFT backend
// (convert_unet_state_dict_to_peft maps ".lora.down"/".lora.up" to PEFT's lora_A/lora_B) and
// without it (UNet2DConditionLoadersMixin.load_attn_procs wants exactly "lora.down.weight" and
// "lora.up.weight" under each LoRACompatibleLinear's path). Neither reads an alpha for this form:
// PEFT then sets lora_alpha = rank, the legacy loader applies no scale, so both compute B A. The
// file therefore holds B * (alpha / rank) as "up", and the same delta W comes out.
//
// Metadata: "format": "pt" (as diffusers writes), and ddactor's rank and alpha, which reading
// back uses to undo the scale. Files without them (written by diffusers) are read with scale 1.

#include <torch/torch.h>

#include <filesystem>

#include "models/sd/low_rank_adapters.hpp"

namespace ddactor {

/// Writes `adapters` atomically (write_safetensors_file). Throws safetensors_error.
void write_lora_file(const std::filesystem::path& file, low_rank_adapters_impl& adapters);

/// The file key of an adapter's A or B for a layer path ("unet.<path>.lora.down.weight").
std::string lora_file_key(const std::string& layer_path, bool up);

/// Fills `adapters` from a LoRA file of this form: every site needs both tensors with the right
/// shapes, and the file may hold nothing else. Throws std::runtime_error naming the file and the
/// keys that do not fit.
void load_lora_file(const std::filesystem::path& file, low_rank_adapters_impl& adapters);

/// Adapters for `unet` made from a LoRA file alone (for applying one that came without its run):
/// the sites are the layers the file's keys name, the rank is their down tensors' first
/// dimension, alpha is ddactor's metadata or else the rank (the scale diffusers applies to this
/// form), and the values are the file's. Throws std::runtime_error naming the file and the key
/// that is not of this form, names no adaptable layer of `unet`, or has another rank.
low_rank_adapters read_lora_adapters(const std::filesystem::path& file, torch::nn::Module& unet);

} // namespace ddactor
