#pragma once
// A diffusers pipeline folder (what `StableDiffusionPipeline.save_pretrained` writes and the
// Hugging Face hub serves), read and checked before any weight is loaded, and written back with
// a fine-tuned UNet.
//
//   <root>/model_index.json            {"_class_name": "StableDiffusionPipeline",
//                                        "unet": ["diffusers", "UNet2DConditionModel"], ...}
//   <root>/unet/          config.json  diffusion_pytorch_model[.fp16].safetensors
//   <root>/vae/           config.json  diffusion_pytorch_model[.fp16].safetensors
//   <root>/text_encoder/  config.json  model[.fp16].safetensors           (a transformers model)
//   <root>/tokenizer/     vocab.json  merges.txt  [tokenizer_config.json  special_tokens_map.json]
//   <root>/scheduler/     scheduler_config.json
//
// model_index.json names each part's library and class; parts ddactor does not use
// (safety_checker, feature_extractor, image_encoder) and parts saved as [null, null] are passed
// over. Which parts must be there depends on the use (a latent DiT needs the VAE, text encoder
// and tokenizer, not the UNet): the caller says. Every problem with a required part ends in one
// diffusers_folder_error naming the file: a part missing from model_index.json or from disk, a
// config that is missing or not JSON, a class ddactor does not read, a config whose own class
// name disagrees with model_index.json, a missing or damaged weights file. Only safetensors
// weights are read: `.bin` files are pickles, which ddactor does not execute.
//
// Weights variants follow diffusers: `<name>.<variant>.safetensors` beside `<name>.safetensors`.
// Without a request the full-precision file is taken, or the fp16 variant when it is the only
// one; with a request the variant is taken where the part has it, else the full-precision file,
// as DiffusionPipeline.from_pretrained(variant=...) does per part.

#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>

namespace ddactor {

/// The parts of a Stable Diffusion pipeline that ddactor reads.
enum class diffusers_part { unet, vae, text_encoder, tokenizer, scheduler };

/// The part's folder name and model_index.json key ("unet", "text_encoder", ...).
std::string_view diffusers_part_name(diffusers_part part);

/// The variant diffusers and transformers save half-precision weights under.
inline constexpr std::string_view fp16_variant = "fp16";

class diffusers_folder_error : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

/// A model part: UNet2DConditionModel, AutoencoderKL or CLIPTextModel.
struct diffusers_model_part {
  std::string class_name;
  std::filesystem::path folder;
  std::filesystem::path config_file; // <folder>/config.json
  nlohmann::json config;
  std::filesystem::path weights_file; // the safetensors file chosen; its header is valid
  std::string weights_variant;        // "" for the full-precision file, else e.g. "fp16"
};

/// The CLIP BPE tokenizer's files. Its two optional JSON files are empty objects when absent.
struct diffusers_tokenizer_part {
  std::string class_name; // CLIPTokenizer
  std::filesystem::path folder;
  std::filesystem::path vocab_file;  // vocab.json: token -> id
  std::filesystem::path merges_file; // merges.txt: BPE merges in rank order
  nlohmann::json tokenizer_config;   // tokenizer_config.json (model_max_length, pad_token, ...)
  nlohmann::json special_tokens_map; // special_tokens_map.json
};

struct diffusers_scheduler_part {
  std::string class_name; // e.g. PNDMScheduler, DDIMScheduler
  std::filesystem::path folder;
  std::filesystem::path config_file; // <folder>/scheduler_config.json
  nlohmann::json config;             // non-finite numbers (Python's -Infinity) read as doubles
};

/// What a pipeline folder holds. Parts that were not required are not read and stay empty.
struct diffusers_folder {
  std::filesystem::path root;
  std::string pipeline_class; // model_index.json's _class_name, e.g. StableDiffusionPipeline
  nlohmann::json model_index;
  std::optional<diffusers_model_part> unet;
  std::optional<diffusers_model_part> vae;
  std::optional<diffusers_model_part> text_encoder;
  std::optional<diffusers_tokenizer_part> tokenizer;
  std::optional<diffusers_scheduler_part> scheduler;
};

struct diffusers_folder_options {
  /// The parts to read; each must be present and valid.
  std::set<diffusers_part> required_parts = {diffusers_part::unet, diffusers_part::vae,
                                             diffusers_part::text_encoder,
                                             diffusers_part::tokenizer, diffusers_part::scheduler};
  /// A weights variant to prefer ("fp16"); empty: full precision where the part has it.
  std::string variant;
};

/// Reads and checks model_index.json and every required part. Throws diffusers_folder_error.
diffusers_folder read_diffusers_folder(const std::filesystem::path& root,
                                       const diffusers_folder_options& options = {});

/// Reads one model part's folder on its own (a `unet/` published without its pipeline, say):
/// its config.json and weights file, checked as read_diffusers_folder checks them, for a model of
/// `class_name`. Throws diffusers_folder_error.
diffusers_model_part read_diffusers_model_part(const std::filesystem::path& folder,
                                               const std::string& class_name,
                                               const std::string& variant = {});

/// Writes `source` to `destination` (which must not exist) with `unet`'s state as the UNet's
/// weights. `unet/` gets the source's config.json unchanged and a new, non-variant
/// `diffusion_pytorch_model.safetensors`: the module's tensors in their own dtypes, in
/// module_state order (parameters, then buffers; for a UNet, which has no buffers, that is
/// diffusers' state_dict order), with diffusers' {"format": "pt"} metadata. The source's other
/// UNet files (an fp16 variant) are left behind, being stale. `unet` must have exactly the keys
/// and shapes of the source's UNet weights.
///
/// model_index.json and the other parts it lists are hard-linked (copied across file systems).
/// The two folders then share those files' storage: a later write into one of them in place
/// (Python's save_pretrained over the source folder, say) changes both. The folder is assembled
/// beside `destination` and renamed into place, so it appears whole or not at all. Holds one copy
/// of the module's state in memory while writing. Throws diffusers_folder_error, or
/// safetensors_error when the weights cannot be written.
void write_diffusers_folder_with_unet(const diffusers_folder& source, torch::nn::Module& unet,
                                      const std::filesystem::path& destination);

} // namespace ddactor
