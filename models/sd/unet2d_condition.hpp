#pragma once
// diffusers' UNet2DConditionModel, the noise predictor of Stable Diffusion 1.x and 2.x, ported
// to LibTorch with diffusers' state_dict names, so a `unet/` folder's weights load as they are:
//
//   sample (N,4,h,w) -> conv_in --------------------------------------------+ skips
//   timesteps (N) -> sinusoids -> time_embedding (N, 4*c0) -> every resnet  |
//   text states (N,77,C) -> every transformer's attn2                       v
//   -> down levels (resnets, transformers, downsample) -> mid block
//   -> up levels (concat skips, resnets, transformers, upsample)
//   -> GroupNorm -> act -> conv_out -> (N,4,h,w)
//
// Loading a diffusers folder:
//
//   auto config = unet2d_condition_config::from_file(folder / "config.json");
//   unet2d_condition unet(config);
//   load_module_state(*unet, folder / "diffusion_pytorch_model.safetensors");
//
// For training in less memory, pass memory_saving_options (activation checkpointing, attention
// by chunks of queries) to the constructor or to apply_memory_saving() later; results are equal.
//
// The config reader accepts what SD 1.x and 2.x ship and refuses, by key and value, every
// setting that would need a part this port does not have (class or addition embeddings,
// other block types, scale-shift time conditioning, ...).

#include <torch/torch.h>

#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "models/sd/activation_function.hpp"
#include "models/sd/diffusers_config.hpp"
#include "models/sd/memory_saving.hpp"
#include "models/sd/timestep_embedding.hpp"
#include "models/sd/unet_blocks.hpp"

namespace ddactor {

enum class unet_down_block_type { down_block_2d, cross_attn_down_block_2d };
enum class unet_up_block_type { up_block_2d, cross_attn_up_block_2d };

/// The diffusers names ("DownBlock2D", "CrossAttnUpBlock2D", ...).
std::string_view block_type_name(unet_down_block_type type);
std::string_view block_type_name(unet_up_block_type type);

/// The fields of a UNet2DConditionModel config.json this port uses, with diffusers' defaults.
/// Per-block lists have one entry per down block, in down order.
struct unet2d_condition_config {
  int64_t in_channels = 4;
  int64_t out_channels = 4;
  /// Latent size the model was trained at (informational: other sizes run too).
  std::optional<int64_t> sample_size;
  bool center_input_sample = false;
  bool flip_sin_to_cos = true;
  double freq_shift = 0.0;
  std::vector<unet_down_block_type> down_block_types = {
    unet_down_block_type::cross_attn_down_block_2d, unet_down_block_type::cross_attn_down_block_2d,
    unet_down_block_type::cross_attn_down_block_2d, unet_down_block_type::down_block_2d};
  std::vector<unet_up_block_type> up_block_types = {
    unet_up_block_type::up_block_2d, unet_up_block_type::cross_attn_up_block_2d,
    unet_up_block_type::cross_attn_up_block_2d, unet_up_block_type::cross_attn_up_block_2d};
  std::vector<int64_t> block_out_channels = {320, 640, 1280, 1280};
  std::vector<int64_t> layers_per_block = {2, 2, 2, 2};
  /// diffusers' `attention_head_dim`, which is really the number of heads per level (8 in
  /// SD 1.x; [5, 10, 20, 20] in SD 2.x).
  std::vector<int64_t> attention_heads = {8, 8, 8, 8};
  std::vector<int64_t> transformer_layers_per_block = {1, 1, 1, 1};
  int64_t cross_attention_dim = 1280;
  int64_t downsample_padding = 1;
  double mid_block_scale_factor = 1.0;
  double dropout = 0.0;
  activation_function act_fn = activation_function::silu;
  int64_t norm_num_groups = 32;
  double norm_eps = 1e-5;
  bool use_linear_projection = false;
  bool upcast_attention = false;
  /// Width of the time embedding; default 4 * block_out_channels[0].
  std::optional<int64_t> time_embedding_dim;
  std::optional<activation_function> time_embedding_act_fn;
  std::optional<activation_function> timestep_post_act;
  int64_t conv_in_kernel = 3;
  int64_t conv_out_kernel = 3;

  /// Throws diffusers_config_error naming the file and the key.
  static unet2d_condition_config from_file(const std::filesystem::path& path);
  static unet2d_condition_config from_config(const diffusers_config& config);

  int64_t time_embed_dim() const;
  /// What does not fit together (list lengths, heads dividing channels, groups dividing
  /// channels, odd kernels), by config key; empty when the model can be built.
  std::vector<config_problem> problems() const;
  /// Throws std::invalid_argument listing problems(), if any.
  void validate() const;
};

/// Called with the name of each stage of the forward pass (time_proj, time_embedding, conv_in,
/// down_blocks.i, mid_block, up_blocks.i, conv_norm_out (before the activation), conv_out) and its
/// output, for comparing a port with diffusers' forward hooks.
using unet_stage_observer = std::function<void(const std::string& stage, const torch::Tensor&)>;

struct unet2d_condition_impl : torch::nn::Module {
  explicit unet2d_condition_impl(unet2d_condition_config config,
                                 const memory_saving_options& memory = {});

  /// sample (N, in_channels, h, w); timesteps (N) or a scalar, integer or float;
  /// encoder_hidden_states (N, L, cross_attention_dim) -> predicted noise (N, out_channels, h, w).
  torch::Tensor forward(const torch::Tensor& sample, const torch::Tensor& timesteps,
                        const torch::Tensor& encoder_hidden_states,
                        const unet_stage_observer& observe = {});

  const unet2d_condition_config& config() const { return config_; }

  torch::nn::Conv2d conv_in{nullptr};
  timestep_embedding time_embedding{nullptr};
  torch::nn::ModuleList down_blocks;
  torch::nn::ModuleList up_blocks;
  unet_mid_block mid_block{nullptr};
  torch::nn::GroupNorm conv_norm_out{nullptr};
  torch::nn::Conv2d conv_out{nullptr};

private:
  unet2d_condition_config config_;
};
TORCH_MODULE_IMPL(unet2d_condition, unet2d_condition_impl);

} // namespace ddactor
