// transformers' CLIPTextModel in LibTorch; see clip_text_model.hpp.
#include "models/sd/clip_text_model.hpp"

#include <cmath>
#include <limits>
#include <stdexcept>

#include "models/sd/module_state_loading.hpp"

namespace ddactor {

namespace {

// quick_gelu's sigmoid slope (OpenAI CLIP's approximation of GELU).
constexpr double quick_gelu_slope = 1.702;

std::string type_of(const nlohmann::json& value) { return value.type_name(); }

int64_t read_int(const nlohmann::json& config, const char* key, int64_t fallback) {
  if (!config.contains(key) || config[key].is_null())
    return fallback;
  const auto& value = config[key];
  if (!value.is_number_integer())
    throw std::invalid_argument(std::string(key) + " must be an integer, not " + type_of(value));
  return value.get<int64_t>();
}

double read_number(const nlohmann::json& config, const char* key, double fallback) {
  if (!config.contains(key) || config[key].is_null())
    return fallback;
  const auto& value = config[key];
  if (!value.is_number())
    throw std::invalid_argument(std::string(key) + " must be a number, not " + type_of(value));
  return value.get<double>();
}

clip_activation read_activation(const nlohmann::json& config) {
  if (!config.contains("hidden_act"))
    return clip_activation::quick_gelu;
  const auto& value = config["hidden_act"];
  if (!value.is_string())
    throw std::invalid_argument("hidden_act must be a string, not " + type_of(value));
  const auto name = value.get<std::string>();
  if (name == "quick_gelu")
    return clip_activation::quick_gelu;
  if (name == "gelu")
    return clip_activation::gelu;
  if (name == "gelu_new")
    return clip_activation::gelu_new;
  throw std::invalid_argument("hidden_act \"" + name +
                              "\" is not supported (quick_gelu, gelu and gelu_new are)");
}

torch::Tensor activate(const torch::Tensor& x, clip_activation activation) {
  switch (activation) {
    case clip_activation::quick_gelu: return x * torch::sigmoid(quick_gelu_slope * x);
    case clip_activation::gelu: return torch::gelu(x);
    case clip_activation::gelu_new: return torch::gelu(x, "tanh");
  }
  throw std::logic_error("unknown clip_activation");
}

torch::nn::LayerNorm layer_norm(const clip_text_config& config) {
  return torch::nn::LayerNorm(
    torch::nn::LayerNormOptions({config.hidden_size}).eps(config.layer_norm_eps));
}

// (L,L): 0 on and below the diagonal, -inf above, so that position i attends to 0..i. The
// diagonal is never masked, so no row of the softmax is all -inf.
torch::Tensor causal_mask(int64_t length, const torch::TensorOptions& options) {
  return torch::full({length, length}, -std::numeric_limits<float>::infinity(), options).triu(1);
}

} // namespace

clip_text_config clip_text_config_from_json(const nlohmann::json& config) {
  if (!config.is_object())
    throw std::invalid_argument("a CLIP text config must be a JSON object, not " + type_of(config));
  if (config.contains("model_type") && config["model_type"] != "clip_text_model")
    throw std::invalid_argument("model_type " + config["model_type"].dump() +
                                " is not clip_text_model (a CLIPTextModel config)");
  clip_text_config out;
  out.vocab_size = read_int(config, "vocab_size", out.vocab_size);
  out.hidden_size = read_int(config, "hidden_size", out.hidden_size);
  out.intermediate_size = read_int(config, "intermediate_size", out.intermediate_size);
  out.projection_dim = read_int(config, "projection_dim", out.projection_dim);
  out.num_hidden_layers = read_int(config, "num_hidden_layers", out.num_hidden_layers);
  out.num_attention_heads = read_int(config, "num_attention_heads", out.num_attention_heads);
  out.max_position_embeddings =
    read_int(config, "max_position_embeddings", out.max_position_embeddings);
  out.hidden_act = read_activation(config);
  out.layer_norm_eps = read_number(config, "layer_norm_eps", out.layer_norm_eps);
  out.attention_dropout = read_number(config, "attention_dropout", out.attention_dropout);
  out.pad_token_id = read_int(config, "pad_token_id", out.pad_token_id);
  out.bos_token_id = read_int(config, "bos_token_id", out.bos_token_id);
  out.eos_token_id = read_int(config, "eos_token_id", out.eos_token_id);

  const std::pair<const char*, int64_t> sizes[] = {
    {"vocab_size", out.vocab_size},
    {"hidden_size", out.hidden_size},
    {"intermediate_size", out.intermediate_size},
    {"num_hidden_layers", out.num_hidden_layers},
    {"num_attention_heads", out.num_attention_heads},
    {"max_position_embeddings", out.max_position_embeddings},
  };
  for (const auto& [key, value] : sizes)
    if (value <= 0)
      throw std::invalid_argument(std::string(key) + " must be positive, not " +
                                  std::to_string(value));
  if (out.hidden_size % out.num_attention_heads != 0)
    throw std::invalid_argument("hidden_size " + std::to_string(out.hidden_size) +
                                " is not divisible by num_attention_heads " +
                                std::to_string(out.num_attention_heads));
  if (!(out.layer_norm_eps > 0))
    throw std::invalid_argument("layer_norm_eps must be positive");
  if (!(out.attention_dropout >= 0 && out.attention_dropout < 1))
    throw std::invalid_argument("attention_dropout must be in [0, 1)");
  return out;
}

torch::Tensor clip_end_token_positions(const torch::Tensor& input_ids, int64_t eos_token_id) {
  TORCH_CHECK(input_ids.dim() == 2, "input_ids must be (N, L), got ", input_ids.sizes());
  // argmax returns the first of equal maxima, which is what both rules rely on.
  if (eos_token_id == clip_legacy_eos_token_id)
    return input_ids.argmax(-1);
  return (input_ids == eos_token_id).to(torch::kInt32).argmax(-1);
}

const std::vector<std::string>& clip_text_ignored_keys() {
  static const std::vector<std::string> keys = {"text_model.embeddings.position_ids"};
  return keys;
}

clip_attention_impl::clip_attention_impl(int64_t hidden_size, int64_t num_heads, double dropout)
  : num_heads(num_heads),
    dropout(dropout),
    k_proj(register_module("k_proj", torch::nn::Linear(hidden_size, hidden_size))),
    v_proj(register_module("v_proj", torch::nn::Linear(hidden_size, hidden_size))),
    q_proj(register_module("q_proj", torch::nn::Linear(hidden_size, hidden_size))),
    out_proj(register_module("out_proj", torch::nn::Linear(hidden_size, hidden_size))) {}

torch::Tensor clip_attention_impl::forward(const torch::Tensor& x, const torch::Tensor& mask) {
  const int64_t batch = x.size(0), length = x.size(1), width = x.size(2);
  const int64_t head_dim = width / num_heads;
  auto heads = [&](const torch::Tensor& t) {
    return t.view({batch, length, num_heads, head_dim}).transpose(1, 2); // (N,H,L,D)
  };
  // transformers 4.36 scales the queries before the product, not the scores after it.
  const auto q = heads(q_proj(x) * std::pow(static_cast<double>(head_dim), -0.5));
  const auto k = heads(k_proj(x));
  const auto v = heads(v_proj(x));
  auto weights = torch::softmax(torch::matmul(q, k.transpose(-1, -2)) + mask, -1);
  weights = torch::dropout(weights, dropout, is_training());
  const auto out = torch::matmul(weights, v).transpose(1, 2).reshape({batch, length, width});
  return out_proj(out);
}

clip_mlp_impl::clip_mlp_impl(int64_t hidden_size, int64_t intermediate_size,
                             clip_activation activation)
  : activation(activation),
    fc1(register_module("fc1", torch::nn::Linear(hidden_size, intermediate_size))),
    fc2(register_module("fc2", torch::nn::Linear(intermediate_size, hidden_size))) {}

torch::Tensor clip_mlp_impl::forward(const torch::Tensor& x) {
  return fc2(activate(fc1(x), activation));
}

clip_encoder_layer_impl::clip_encoder_layer_impl(const clip_text_config& config)
  : self_attn(register_module("self_attn",
                              clip_attention(config.hidden_size, config.num_attention_heads,
                                             config.attention_dropout))),
    layer_norm1(register_module("layer_norm1", layer_norm(config))),
    mlp(register_module("mlp", clip_mlp(config.hidden_size, config.intermediate_size,
                                        config.hidden_act))),
    layer_norm2(register_module("layer_norm2", layer_norm(config))) {}

torch::Tensor clip_encoder_layer_impl::forward(const torch::Tensor& x,
                                               const torch::Tensor& causal_mask) {
  const auto attended = x + self_attn(layer_norm1(x), causal_mask);
  return attended + mlp(layer_norm2(attended));
}

clip_text_embeddings_impl::clip_text_embeddings_impl(const clip_text_config& config)
  : token_embedding(register_module(
      "token_embedding", torch::nn::Embedding(config.vocab_size, config.hidden_size))),
    position_embedding(register_module(
      "position_embedding",
      torch::nn::Embedding(config.max_position_embeddings, config.hidden_size))) {}

torch::Tensor clip_text_embeddings_impl::forward(const torch::Tensor& input_ids) {
  const auto positions =
    torch::arange(input_ids.size(1), torch::TensorOptions(torch::kInt64).device(input_ids.device()));
  return token_embedding(input_ids) + position_embedding(positions);
}

clip_encoder_impl::clip_encoder_impl(const clip_text_config& config)
  : layers(register_module("layers", torch::nn::ModuleList())) {
  for (int64_t i = 0; i < config.num_hidden_layers; ++i)
    layers->push_back(clip_encoder_layer(config));
}

std::vector<torch::Tensor> clip_encoder_impl::forward(const torch::Tensor& embeddings,
                                                      const torch::Tensor& causal_mask) {
  std::vector<torch::Tensor> hidden_states{embeddings};
  hidden_states.reserve(layers->size() + 1);
  for (const auto& layer : *layers)
    hidden_states.push_back(
      layer->as<clip_encoder_layer_impl>()->forward(hidden_states.back(), causal_mask));
  return hidden_states;
}

clip_text_transformer_impl::clip_text_transformer_impl(const clip_text_config& config)
  : eos_token_id(config.eos_token_id),
    embeddings(register_module("embeddings", clip_text_embeddings(config))),
    encoder(register_module("encoder", clip_encoder(config))),
    final_layer_norm(register_module("final_layer_norm", layer_norm(config))) {}

clip_text_output clip_text_transformer_impl::forward(const torch::Tensor& input_ids) {
  TORCH_CHECK(input_ids.dim() == 2, "input_ids must be (N, L), got ", input_ids.sizes());
  TORCH_CHECK(input_ids.scalar_type() == torch::kInt64, "input_ids must be int64, got ",
              input_ids.scalar_type());
  const int64_t max_length = embeddings->position_embedding->weight.size(0);
  TORCH_CHECK(input_ids.size(1) <= max_length, "input_ids has ", input_ids.size(1),
              " positions; the model has ", max_length, " (max_position_embeddings)");

  clip_text_output out;
  const auto embedded = embeddings(input_ids);
  out.hidden_states = encoder(embedded, causal_mask(input_ids.size(1), embedded.options()));
  out.last_hidden_state = final_layer_norm(out.hidden_states.back());
  const auto rows = torch::arange(input_ids.size(0), input_ids.options());
  out.pooled_output =
    out.last_hidden_state.index({rows, clip_end_token_positions(input_ids, eos_token_id)});
  return out;
}

clip_text_model_impl::clip_text_model_impl(const clip_text_config& config)
  : config(config), text_model(register_module("text_model", clip_text_transformer(config))) {}

clip_text_output clip_text_model_impl::forward(const torch::Tensor& input_ids) {
  return text_model(input_ids);
}

torch::Tensor clip_text_model_impl::prompt_embeddings(const torch::Tensor& input_ids,
                                                      int64_t clip_skip) {
  TORCH_CHECK(clip_skip >= 0 && clip_skip <= config.num_hidden_layers, "clip_skip ", clip_skip,
              " is outside 0..", config.num_hidden_layers, " (num_hidden_layers)");
  auto out = forward(input_ids);
  if (clip_skip == 0)
    return out.last_hidden_state;
  const auto chosen = out.hidden_states[static_cast<size_t>(config.num_hidden_layers - clip_skip)];
  return text_model->final_layer_norm(chosen);
}

clip_text_model load_clip_text_model(const diffusers_model_part& text_encoder) {
  clip_text_config config;
  try {
    config = clip_text_config_from_json(text_encoder.config);
  } catch (const std::invalid_argument& e) {
    throw std::runtime_error(text_encoder.config_file.string() + ": " + e.what());
  }
  clip_text_model model(config);
  load_module_state(*model, text_encoder.weights_file, {clip_text_ignored_keys()});
  model->eval();
  return model;
}

} // namespace ddactor
