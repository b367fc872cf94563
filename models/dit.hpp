#pragma once
// The Diffusion Transformer with adaLN-Zero conditioning (Peebles & Xie, "Scalable Diffusion Models
// with Transformers", 2023), predicting a flow-matching velocity instead of noise.
//
//   x (N,C,H,W) --patchify--> tokens (N,T,D) + fixed 2D sin-cos positions
//   t --sinusoid--> MLP --+
//   y --label/caption-----+--> c (N,D)
//   tokens --[DiT block x depth, each modulated by c]--> final layer --> unpatchify --> v (N,C,H,W)
//
// With "text_embedding" conditioning (the latent DiT of Decentralized Diffusion Models, trained
// on a Stable Diffusion folder's VAE latents) the condition is a frozen text encoder's states
// (N, L, W): an MLP maps them to the hidden width and every block attends to them between its
// self-attention and its MLP (cross-attention as in PixArt-alpha, Chen et al. 2023), so that a
// prompt steers each token rather than one pooled vector. The null condition of guidance is an
// embedding too (the empty or negative prompt's), carried by the condition itself.
//
// Every modulation layer and the output projection start at zero, so an untrained DiT is the
// identity on its residual stream and outputs exactly zero.

#include <torch/torch.h>

#include "models/caption_encoder.hpp"

namespace ddactor {

/// The shape of a DiT; presets S/B/L/XL come from config/.
struct dit_options {
  int64_t image_size = 28;
  int64_t in_channels = 1;
  int64_t patch_size = 4;
  int64_t hidden_size = 128;
  int64_t depth = 4;
  int64_t num_heads = 4;
  double mlp_ratio = 4.0;
  /// "class", "caption" (the byte-level caption encoder trained with the model),
  /// "text_embedding" (a frozen text encoder's states, see above) or "none".
  std::string conditioning = "class";
  int64_t num_classes = 10;
  caption_encoder_options caption;
  /// "text_embedding": the states' length and width (77 x 768 for SD 1.x's CLIP).
  int64_t context_length = 77;
  int64_t context_width = 768;
};

/// What a batch is conditioned on. For class conditioning `labels` (N) int64; for captions
/// `tokens` (N, L) int64 from tokenize_captions(); for text embeddings `context` (N, L, W) float
/// and `null_context` (N, L, W), the states that replace it in null rows. `is_null` (N) bool
/// selects the null condition (classifier-free guidance): set by dropout while training and for
/// the unconditional branch while sampling. Undefined tensors mean "not used".
struct dit_condition {
  torch::Tensor labels;
  torch::Tensor tokens;
  torch::Tensor is_null;
  torch::Tensor context;
  torch::Tensor null_context;

  int64_t batch_size() const;
  /// The same conditions with every entry null.
  dit_condition as_null() const;
  /// Rows of `this` followed by rows of `other` (for one batched CFG forward pass).
  dit_condition concat(const dit_condition& other) const;
  /// Rows [begin, end).
  dit_condition slice(int64_t begin, int64_t end) const;
  /// The rows `indices` (int64) names, in its order.
  dit_condition select(const torch::Tensor& indices) const;
  dit_condition to(const torch::Device& device) const;
};

/// Fixed 2D sine-cosine position embedding, (grid*grid, dim), as in MAE/DiT.
torch::Tensor sincos_2d_position_embedding(int64_t dim, int64_t grid_size);

/// Sinusoidal embedding of scalar times (N) into (N, dim).
torch::Tensor timestep_frequency_embedding(const torch::Tensor& t, int64_t dim,
                                           double max_period = 10000.0);

/// Scalar time t in [0, 1] -> (N, hidden).
struct timestep_embedder_impl : torch::nn::Module {
  explicit timestep_embedder_impl(int64_t hidden_size, int64_t frequency_size = 256);
  torch::Tensor forward(const torch::Tensor& t);

  int64_t frequency_size;
  torch::nn::Linear fc1;
  torch::nn::Linear fc2;
};
TORCH_MODULE_IMPL(timestep_embedder, timestep_embedder_impl);

/// Multi-head self-attention with a fused qkv projection.
struct attention_impl : torch::nn::Module {
  attention_impl(int64_t dim, int64_t num_heads);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& key_padding_mask = {});

  int64_t num_heads;
  torch::nn::Linear qkv;
  torch::nn::Linear proj;
};
TORCH_MODULE_IMPL(attention, attention_impl);

/// Two-layer MLP with GELU. The exact (erf) form, not DiT's tanh approximation: on Debian's
/// LibTorch the tanh kernel is 4x slower on the CPU, and the two differ by < 1e-3.
struct feed_forward_impl : torch::nn::Module {
  feed_forward_impl(int64_t dim, int64_t hidden);
  torch::Tensor forward(const torch::Tensor& x);

  torch::nn::Linear fc1;
  torch::nn::Linear fc2;
};
TORCH_MODULE_IMPL(feed_forward, feed_forward_impl);

/// Multi-head attention of tokens (N, T, D) to a context (N, L, D).
struct context_attention_impl : torch::nn::Module {
  context_attention_impl(int64_t dim, int64_t num_heads);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& context);

  int64_t num_heads;
  torch::nn::Linear q;
  torch::nn::Linear kv;
  torch::nn::Linear proj;  // zero-initialised: a new block starts without the context
};
TORCH_MODULE_IMPL(context_attention, context_attention_impl);

/// One transformer block whose LayerNorms are shifted, scaled and gated by the condition, with
/// cross-attention to a context when built `with_context`.
struct dit_block_impl : torch::nn::Module {
  dit_block_impl(int64_t hidden_size, int64_t num_heads, double mlp_ratio,
                 bool with_context = false);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& c,
                        const torch::Tensor& context = {});

  torch::nn::LayerNorm norm1;
  attention attn;
  torch::nn::LayerNorm norm2;
  feed_forward mlp;
  torch::nn::Linear ada_ln;  // c -> 6 * hidden, zero-initialised
  torch::nn::LayerNorm norm_context{nullptr};
  context_attention context_attn{nullptr};
};
TORCH_MODULE_IMPL(dit_block, dit_block_impl);

/// Modulated LayerNorm and the linear map from tokens back to patches.
struct dit_final_layer_impl : torch::nn::Module {
  dit_final_layer_impl(int64_t hidden_size, int64_t patch_size, int64_t out_channels);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& c);

  torch::nn::LayerNorm norm;
  torch::nn::Linear linear;  // zero-initialised
  torch::nn::Linear ada_ln;  // c -> 2 * hidden, zero-initialised
};
TORCH_MODULE_IMPL(dit_final_layer, dit_final_layer_impl);

struct dit_impl : torch::nn::Module {
  explicit dit_impl(dit_options options);

  /// Predicted velocity for noisy images x (N,C,H,W) at times t (N) in [0, 1].
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& t, const dit_condition& cond);

  /// The condition vector c (N, hidden) added to the time embedding.
  torch::Tensor embed_condition(const dit_condition& cond);
  /// The context (N, L, hidden) the blocks attend to ("text_embedding"), else undefined.
  torch::Tensor embed_context(const dit_condition& cond);

  torch::Tensor patchify_positions() const { return pos_embed; }
  const dit_options& options() const { return options_; }

  torch::nn::Conv2d patch_embed;
  torch::Tensor pos_embed;  // buffer, fixed
  timestep_embedder t_embedder;
  torch::nn::Embedding label_embedder{nullptr};  // num_classes + 1 rows; the last is "null"
  caption_encoder text_encoder{nullptr};
  torch::nn::Sequential context_embedder{nullptr};  // text states -> hidden width
  torch::nn::ModuleList blocks;
  dit_final_layer final_layer;

 private:
  torch::Tensor unpatchify(const torch::Tensor& x) const;
  void initialize_weights();

  dit_options options_;
};
TORCH_MODULE_IMPL(dit, dit_impl);

/// Trainable parameter count.
int64_t count_parameters(const torch::nn::Module& module);

} // namespace ddactor
