#pragma once
// A small text encoder trained together with the DiT, for folder data sets with captions.
//
// Captions are read as UTF-8 bytes (no vocabulary file to ship or get wrong): token = byte value,
// 256 = padding. A few pre-LayerNorm transformer layers run over the bytes, a masked mean pools
// them, and a linear map gives one condition vector per caption. The null caption (classifier-free
// guidance dropout, empty captions) is a learned vector of its own.

#include <torch/torch.h>

#include <string>
#include <vector>

namespace ddactor {

struct caption_encoder_options {
  int64_t width = 128;
  int64_t layers = 2;
  int64_t num_heads = 4;
  int64_t max_bytes = 64;
};

inline constexpr int64_t caption_padding_token = 256;

/// (N, max_bytes) int64 byte tokens, right-padded with caption_padding_token; longer captions are
/// cut at max_bytes.
torch::Tensor tokenize_captions(const std::vector<std::string>& captions, int64_t max_bytes);

struct text_layer_impl : torch::nn::Module {
  text_layer_impl(int64_t width, int64_t num_heads);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& padding_mask);

  int64_t num_heads;
  torch::nn::LayerNorm norm1;
  torch::nn::Linear qkv;
  torch::nn::Linear proj;
  torch::nn::LayerNorm norm2;
  torch::nn::Linear fc1;
  torch::nn::Linear fc2;
};
TORCH_MODULE_IMPL(text_layer, text_layer_impl);

struct caption_encoder_impl : torch::nn::Module {
  caption_encoder_impl(caption_encoder_options options, int64_t output_size);

  /// tokens (N, L) -> (N, output_size). Rows where is_null is true, or with no byte at all, get the
  /// learned null embedding.
  torch::Tensor forward(const torch::Tensor& tokens, const torch::Tensor& is_null = {});

  caption_encoder_options options;
  torch::nn::Embedding token_embedding;
  torch::Tensor position_embedding;  // (max_bytes, width), learned
  torch::nn::ModuleList layers;
  torch::nn::LayerNorm final_norm;
  torch::nn::Linear output;
  torch::Tensor null_embedding;  // (output_size), learned
};
TORCH_MODULE_IMPL(caption_encoder, caption_encoder_impl);

} // namespace ddactor
