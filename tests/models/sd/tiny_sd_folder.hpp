#pragma once
// A tiny Stable Diffusion 1.x pipeline folder assembled from the reference fixtures
// (DDACTOR_SD1_FIXTURES): the fixture UNet, VAE and CLIP text encoder, the fixture BPE vocabulary,
// and the model_index.json, tokenizer and scheduler configs SD 1.5 ships, as
// StableDiffusionPipeline.save_pretrained (diffusers v0.25.1) writes them. Weights are linked,
// not copied. Torch-free: the multi-process tests use it too.
//
// The tiny VAE halves the image once (block_out_channels [32, 64]), so its latents are H/2 x W/2
// (SD's is H/8 x W/8); the tiny UNet's cross_attention_dim (32) fits the tiny text encoder.

#include <filesystem>
#include <fstream>
#include <string>
#include <tuple>

namespace ddactor::tiny_sd {

inline std::filesystem::path fixtures() { return DDACTOR_SD1_FIXTURES; }

/// Why a tiny folder cannot be assembled (a fixture file is absent), or empty.
inline std::string missing_fixtures() {
  for (const auto* file : {"tiny_unet/diffusion_pytorch_model.safetensors",
                           "tiny_unet/config.json", "tiny_vae/diffusion_pytorch_model.safetensors",
                           "tiny_vae/config.json", "tiny_clip_text/model.safetensors",
                           "tiny_clip_text/config.json", "clip_tokenizer/vocab.json",
                           "clip_tokenizer/merges.txt"}) {
    std::error_code error;
    if (!std::filesystem::is_regular_file(fixtures() / file, error))
      return "SD 1.x fixture " + (fixtures() / file).string() +
             " is absent (DDACTOR_SD1_FIXTURES=" + fixtures().string() + ")";
  }
  return {};
}

inline constexpr const char* model_index = R"({
  "_class_name": "StableDiffusionPipeline",
  "_diffusers_version": "0.25.1",
  "feature_extractor": [null, null],
  "image_encoder": [null, null],
  "requires_safety_checker": false,
  "safety_checker": [null, null],
  "scheduler": ["diffusers", "PNDMScheduler"],
  "text_encoder": ["transformers", "CLIPTextModel"],
  "tokenizer": ["transformers", "CLIPTokenizer"],
  "unet": ["diffusers", "UNet2DConditionModel"],
  "vae": ["diffusers", "AutoencoderKL"]
}
)";

/// SD 1.x's scheduler: PNDM with the SD 1.x noise schedule.
inline constexpr const char* scheduler_config = R"({
  "_class_name": "PNDMScheduler",
  "_diffusers_version": "0.25.1",
  "beta_end": 0.012,
  "beta_schedule": "scaled_linear",
  "beta_start": 0.00085,
  "clip_sample": false,
  "num_train_timesteps": 1000,
  "prediction_type": "epsilon",
  "set_alpha_to_one": false,
  "skip_prk_steps": true,
  "steps_offset": 1,
  "timestep_spacing": "leading",
  "trained_betas": null
}
)";

inline constexpr const char* tokenizer_config = R"({
  "add_prefix_space": false,
  "bos_token": "<|startoftext|>",
  "do_lower_case": true,
  "eos_token": "<|endoftext|>",
  "errors": "replace",
  "model_max_length": 77,
  "pad_token": "<|endoftext|>",
  "tokenizer_class": "CLIPTokenizer",
  "unk_token": "<|endoftext|>"
}
)";

inline constexpr const char* special_tokens_map = R"({
  "bos_token": "<|startoftext|>",
  "eos_token": "<|endoftext|>",
  "pad_token": "<|endoftext|>",
  "unk_token": "<|endoftext|>"
}
)";

inline void write_file(const std::filesystem::path& file, const std::string& text) {
  std::filesystem::create_directories(file.parent_path());
  std::filesystem::remove(file);  // never write through a link into the fixtures
  std::ofstream(file, std::ios::binary) << text;
}

inline void link_fixture(const std::filesystem::path& fixture_file,
                         const std::filesystem::path& link) {
  std::filesystem::create_directories(link.parent_path());
  std::filesystem::create_symlink(fixture_file, link);
}

/// Assembles the folder at `root` (created).
inline void assemble(const std::filesystem::path& root) {
  std::filesystem::create_directories(root);
  write_file(root / "model_index.json", model_index);
  for (const auto& [part, fixture, weights] :
       {std::tuple{"unet", "tiny_unet", "diffusion_pytorch_model.safetensors"},
        std::tuple{"vae", "tiny_vae", "diffusion_pytorch_model.safetensors"},
        std::tuple{"text_encoder", "tiny_clip_text", "model.safetensors"}}) {
    link_fixture(fixtures() / fixture / "config.json", root / part / "config.json");
    link_fixture(fixtures() / fixture / weights, root / part / weights);
  }
  link_fixture(fixtures() / "clip_tokenizer" / "vocab.json", root / "tokenizer" / "vocab.json");
  link_fixture(fixtures() / "clip_tokenizer" / "merges.txt", root / "tokenizer" / "merges.txt");
  write_file(root / "tokenizer" / "tokenizer_config.json", tokenizer_config);
  write_file(root / "tokenizer" / "special_tokens_map.json", special_tokens_map);
  write_file(root / "scheduler" / "scheduler_config.json", scheduler_config);
}

} // namespace ddactor::tiny_sd

/// In a test of namespace ddactor (or below): skips it, with the reason, without the fixtures.
#define SKIP_WITHOUT_TINY_SD()                                                                    \
  do {                                                                                            \
    if (const auto why = ::ddactor::tiny_sd::missing_fixtures(); !why.empty())                               \
      GTEST_SKIP() << why;                                                                        \
  } while (false)

