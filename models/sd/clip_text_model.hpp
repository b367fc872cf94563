#pragma once
// transformers' CLIPTextModel (v4.36), the text encoder of Stable Diffusion 1.x and 2.x, in
// LibTorch:
//
//   input_ids (N,L) --token embedding + position embedding--> (N,L,C)          hidden_states[0]
//     --[encoder layer x num_hidden_layers]-->                                 hidden_states[1..]
//          x = x + self_attn(layer_norm1(x))   causal: position i sees 0..i
//          x = x + mlp(layer_norm2(x))         fc1 -> hidden_act -> fc2
//     --final_layer_norm--> last_hidden_state (N,L,C)
//     --each row's end token--> pooled_output (N,C)
//
// Module names are transformers' own, so the state_dict keys are exactly those of a
// `text_encoder/model.safetensors` (`text_model.encoder.layers.0.self_attn.q_proj.weight`, ...),
// in the same order. CLIPTextModel has no text projection: `projection_dim` is read and ignored.
// `position_ids` is not a buffer here (transformers 4.36 keeps it non-persistent), but older
// checkpoints carry it, so loading ignores that key (clip_text_ignored_keys).
//
// Parameters start at LibTorch's default initialization, not transformers' _init_weights: this
// model is meant to be loaded from a checkpoint.

#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

#include "models/sd/diffusers_folder.hpp"

namespace ddactor {

enum class clip_activation {
  quick_gelu, // x * sigmoid(1.702 x): OpenAI CLIP, SD 1.x
  gelu,       // the exact (erf) form: OpenCLIP ViT-H, SD 2.x
  gelu_new,   // the tanh approximation
};

/// CLIPTextConfig's fields that shape the model. Defaults are transformers 4.36's, used for
/// keys a config.json leaves out, as from_pretrained does.
struct clip_text_config {
  int64_t vocab_size = 49408;
  int64_t hidden_size = 512;
  int64_t intermediate_size = 2048;
  int64_t projection_dim = 512; // CLIPTextModelWithProjection's; unused here
  int64_t num_hidden_layers = 12;
  int64_t num_attention_heads = 8;
  int64_t max_position_embeddings = 77;
  clip_activation hidden_act = clip_activation::quick_gelu;
  double layer_norm_eps = 1e-5;
  double attention_dropout = 0.0;
  int64_t pad_token_id = 1;
  int64_t bos_token_id = 49406;
  int64_t eos_token_id = 49407;
};

/// Reads a transformers config.json object. Throws std::invalid_argument naming the key for a
/// value of the wrong type, an unsupported hidden_act, a non-positive size, a hidden_size that
/// the heads do not divide, or a model_type other than clip_text_model (a whole CLIPModel config,
/// say).
clip_text_config clip_text_config_from_json(const nlohmann::json& config);

/// SD 1.x checkpoints keep the `eos_token_id` of 2 that transformers configs had before 4.31;
/// with it transformers takes the largest id of each row as its end token (CLIP's
/// <|endoftext|> is the largest id of its vocabulary).
inline constexpr int64_t clip_legacy_eos_token_id = 2;

/// The position of each row's end token, (N) int64, by transformers 4.36's rule: with the legacy
/// eos_token_id (2), the first position of the row's largest id; otherwise the first position of
/// eos_token_id (position 0 when the row has none).
torch::Tensor clip_end_token_positions(const torch::Tensor& input_ids, int64_t eos_token_id);

/// State keys a text encoder file may hold that this model has no tensor for.
const std::vector<std::string>& clip_text_ignored_keys();

struct clip_text_output {
  torch::Tensor last_hidden_state; // (N,L,C), after final_layer_norm
  torch::Tensor pooled_output;     // (N,C): last_hidden_state at each row's end token
  /// num_hidden_layers + 1 tensors (N,L,C), before final_layer_norm: the embeddings, then the
  /// output of each encoder layer (transformers' `hidden_states` with output_hidden_states).
  std::vector<torch::Tensor> hidden_states;
};

/// Multi-head self-attention with separate q/k/v projections, scaled by head_dim^-0.5.
struct clip_attention_impl : torch::nn::Module {
  clip_attention_impl(int64_t hidden_size, int64_t num_heads, double dropout);
  /// x (N,L,C); causal_mask (L,L) is added to the attention scores.
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& causal_mask);

  int64_t num_heads;
  double dropout;
  // Registered in transformers' order (k, v, q, out), which fixes the state_dict order.
  torch::nn::Linear k_proj;
  torch::nn::Linear v_proj;
  torch::nn::Linear q_proj;
  torch::nn::Linear out_proj;
};
TORCH_MODULE_IMPL(clip_attention, clip_attention_impl);

struct clip_mlp_impl : torch::nn::Module {
  clip_mlp_impl(int64_t hidden_size, int64_t intermediate_size, clip_activation activation);
  torch::Tensor forward(const torch::Tensor& x);

  clip_activation activation;
  torch::nn::Linear fc1;
  torch::nn::Linear fc2;
};
TORCH_MODULE_IMPL(clip_mlp, clip_mlp_impl);

/// One pre-LayerNorm transformer layer.
struct clip_encoder_layer_impl : torch::nn::Module {
  explicit clip_encoder_layer_impl(const clip_text_config& config);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& causal_mask);

  clip_attention self_attn;
  torch::nn::LayerNorm layer_norm1;
  clip_mlp mlp;
  torch::nn::LayerNorm layer_norm2;
};
TORCH_MODULE_IMPL(clip_encoder_layer, clip_encoder_layer_impl);

struct clip_text_embeddings_impl : torch::nn::Module {
  explicit clip_text_embeddings_impl(const clip_text_config& config);
  /// input_ids (N,L) int64 -> (N,L,C); positions are 0..L-1.
  torch::Tensor forward(const torch::Tensor& input_ids);

  torch::nn::Embedding token_embedding;
  torch::nn::Embedding position_embedding;
};
TORCH_MODULE_IMPL(clip_text_embeddings, clip_text_embeddings_impl);

struct clip_encoder_impl : torch::nn::Module {
  explicit clip_encoder_impl(const clip_text_config& config);
  /// The input followed by each layer's output (num_layers + 1 tensors).
  std::vector<torch::Tensor> forward(const torch::Tensor& embeddings,
                                     const torch::Tensor& causal_mask);

  torch::nn::ModuleList layers;
};
TORCH_MODULE_IMPL(clip_encoder, clip_encoder_impl);

/// transformers' CLIPTextTransformer: the whole computation, under the `text_model` prefix.
struct clip_text_transformer_impl : torch::nn::Module {
  explicit clip_text_transformer_impl(const clip_text_config& config);
  clip_text_output forward(const torch::Tensor& input_ids);

  int64_t eos_token_id;
  clip_text_embeddings embeddings;
  clip_encoder encoder;
  torch::nn::LayerNorm final_layer_norm;
};
TORCH_MODULE_IMPL(clip_text_transformer, clip_text_transformer_impl);

struct clip_text_model_impl : torch::nn::Module {
  explicit clip_text_model_impl(const clip_text_config& config);

  /// input_ids (N,L) int64 with L <= max_position_embeddings; no attention mask beyond the
  /// causal one, as Stable Diffusion's pipelines call it.
  clip_text_output forward(const torch::Tensor& input_ids);

  /// The prompt embeddings a UNet is conditioned on, as diffusers v0.25.1's
  /// StableDiffusionPipeline.encode_prompt takes them. clip_skip 0 is last_hidden_state. clip_skip
  /// k >= 1 takes the output k layers before the last, hidden_states[num_hidden_layers - k], and
  /// applies final_layer_norm to it as diffusers does (k = 1: the penultimate layer). SD 2.x
  /// needs no clip skip: its text_encoder ships with the last layer already removed (23 layers).
  torch::Tensor prompt_embeddings(const torch::Tensor& input_ids, int64_t clip_skip = 0);

  clip_text_config config;
  clip_text_transformer text_model;
};
TORCH_MODULE_IMPL(clip_text_model, clip_text_model_impl);

/// A CLIPTextModel built from a text encoder part's config.json and filled from its weights
/// file (by load_module_state, ignoring clip_text_ignored_keys), in eval mode. Throws
/// std::runtime_error naming the config file for a config the model cannot take, and naming the
/// weights file and keys for weights that do not fit.
clip_text_model load_clip_text_model(const diffusers_model_part& text_encoder);

} // namespace ddactor
