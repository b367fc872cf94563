// UNet2DConditionModel: its config.json and its forward pass; see unet2d_condition.hpp.
#include "models/sd/unet2d_condition.hpp"

#include <stdexcept>

namespace ddactor {

namespace {

// diffusers accepts the block names with a "UNetRes" prefix too (an older spelling).
std::string_view without_unet_res_prefix(std::string_view name) {
  constexpr std::string_view prefix = "UNetRes";
  return name.starts_with(prefix) ? name.substr(prefix.size()) : name;
}

std::optional<unet_down_block_type> down_block_type_from_name(std::string_view name) {
  name = without_unet_res_prefix(name);
  if (name == "DownBlock2D")
    return unet_down_block_type::down_block_2d;
  if (name == "CrossAttnDownBlock2D")
    return unet_down_block_type::cross_attn_down_block_2d;
  return std::nullopt;
}

std::optional<unet_up_block_type> up_block_type_from_name(std::string_view name) {
  name = without_unet_res_prefix(name);
  if (name == "UpBlock2D")
    return unet_up_block_type::up_block_2d;
  if (name == "CrossAttnUpBlock2D")
    return unet_up_block_type::cross_attn_up_block_2d;
  return std::nullopt;
}

activation_function read_activation(const diffusers_config& config, std::string_view key,
                                    const std::string& fallback) {
  auto name = config.text(key, fallback);
  auto function = activation_from_name(name);
  if (!function)
    config.refuse(key, "unknown activation (known: silu, swish, mish, gelu, relu)");
  return *function;
}

std::optional<activation_function> read_optional_activation(const diffusers_config& config,
                                                            std::string_view key) {
  if (!config.has(key))
    return std::nullopt;
  return read_activation(config, key, "");
}

// Settings of UNet2DConditionModel that switch on parts this port does not have; each must be
// absent, null or the value given.
void refuse_unsupported_features(const diffusers_config& c) {
  c.require_default("class_embed_type", nullptr, "class embeddings");
  c.require_default("num_class_embeds", nullptr, "class embeddings");
  c.require_default("class_embeddings_concat", false, "concatenated class embeddings");
  c.require_default("addition_embed_type", nullptr, "addition embeddings (SDXL, Kandinsky)");
  c.require_default("encoder_hid_dim", nullptr, "an encoder hidden-state projection");
  c.require_default("encoder_hid_dim_type", nullptr, "an encoder hidden-state projection");
  c.require_default("time_cond_proj_dim", nullptr, "timestep conditioning projection (LCM)");
  c.require_default("time_embedding_type", "positional", "this time embedding type");
  c.require_default("resnet_time_scale_shift", "default", "this time conditioning of resnets");
  c.require_default("resnet_skip_time_act", false, "resnets without the time activation");
  c.require_default("dual_cross_attention", false, "dual cross-attention");
  c.require_default("attention_type", "default", "gated (GLIGEN) attention");
  c.require_default("cross_attention_norm", nullptr, "normalised cross-attention context");
  c.require_default("mid_block_type", "UNetMidBlock2DCrossAttn", "this mid block type");
  c.require_default("reverse_transformer_layers_per_block", nullptr,
                    "asymmetric transformer depths");
  // diffusers 0.25 refuses it too: the field means heads, but is spelled attention_head_dim.
  c.require_default("num_attention_heads", nullptr,
                    "num_attention_heads (diffusers reads the heads from attention_head_dim)");
}

} // namespace

std::string_view block_type_name(unet_down_block_type type) {
  return type == unet_down_block_type::down_block_2d ? "DownBlock2D" : "CrossAttnDownBlock2D";
}

std::string_view block_type_name(unet_up_block_type type) {
  return type == unet_up_block_type::up_block_2d ? "UpBlock2D" : "CrossAttnUpBlock2D";
}

unet2d_condition_config unet2d_condition_config::from_file(const std::filesystem::path& path) {
  return from_config(diffusers_config::from_file(path));
}

unet2d_condition_config unet2d_condition_config::from_config(const diffusers_config& c) {
  c.require_class("UNet2DConditionModel");
  refuse_unsupported_features(c);

  unet2d_condition_config out;
  out.in_channels = c.integer("in_channels", out.in_channels);
  out.out_channels = c.integer("out_channels", out.out_channels);
  if (c.has("sample_size"))
    out.sample_size = c.integer("sample_size", 0);
  out.center_input_sample = c.boolean("center_input_sample", out.center_input_sample);
  out.flip_sin_to_cos = c.boolean("flip_sin_to_cos", out.flip_sin_to_cos);
  out.freq_shift = c.number("freq_shift", out.freq_shift);

  if (c.has("down_block_types")) {
    out.down_block_types.clear();
    for (const auto& name : c.texts("down_block_types", {})) {
      auto type = down_block_type_from_name(name);
      if (!type)
        c.refuse("down_block_types", "unknown block type \"" + name +
                                       "\" (supported: CrossAttnDownBlock2D, DownBlock2D)");
      out.down_block_types.push_back(*type);
    }
  }
  if (c.has("up_block_types")) {
    out.up_block_types.clear();
    for (const auto& name : c.texts("up_block_types", {})) {
      auto type = up_block_type_from_name(name);
      if (!type)
        c.refuse("up_block_types", "unknown block type \"" + name +
                                     "\" (supported: UpBlock2D, CrossAttnUpBlock2D)");
      out.up_block_types.push_back(*type);
    }
  }
  const auto levels = out.down_block_types.size();
  out.block_out_channels = c.integers("block_out_channels", out.block_out_channels);
  if (out.block_out_channels.size() != levels)
    c.refuse("block_out_channels", "expected one entry per down block (" +
                                     std::to_string(levels) + ")");
  if (out.up_block_types.size() != levels)
    c.refuse("up_block_types", "expected as many up blocks as down blocks (" +
                                 std::to_string(levels) + ")");
  for (bool only_cross : c.per_block_booleans("only_cross_attention", levels, false))
    if (only_cross)
      c.refuse("only_cross_attention", "cross-attention-only transformer blocks are not "
                                       "supported by ddactor's port (supported: false)");
  out.layers_per_block = c.per_block_integers("layers_per_block", levels, 2);
  // The head count of the cross-attention blocks; diffusers cannot build them from null either.
  if (c.holds_null("attention_head_dim"))
    c.refuse("attention_head_dim", "expected a head count (one or one per down block)");
  out.attention_heads = c.per_block_integers("attention_head_dim", levels, 8);
  out.transformer_layers_per_block =
    c.per_block_integers("transformer_layers_per_block", levels, 1);
  out.cross_attention_dim = c.integer("cross_attention_dim", out.cross_attention_dim);
  out.downsample_padding = c.integer("downsample_padding", out.downsample_padding);
  out.mid_block_scale_factor = c.number("mid_block_scale_factor", out.mid_block_scale_factor);
  out.dropout = c.number("dropout", out.dropout);
  out.act_fn = read_activation(c, "act_fn", "silu");
  if (c.holds_null("norm_num_groups"))
    c.refuse("norm_num_groups", "a UNet without its output GroupNorm is not supported");
  out.norm_num_groups = c.integer("norm_num_groups", out.norm_num_groups);
  out.norm_eps = c.number("norm_eps", out.norm_eps);
  out.use_linear_projection = c.boolean("use_linear_projection", out.use_linear_projection);
  out.upcast_attention = c.boolean("upcast_attention", out.upcast_attention);
  out.time_embedding_dim = c.optional_integer("time_embedding_dim");
  out.time_embedding_act_fn = read_optional_activation(c, "time_embedding_act_fn");
  out.timestep_post_act = read_optional_activation(c, "timestep_post_act");
  out.conv_in_kernel = c.integer("conv_in_kernel", out.conv_in_kernel);
  out.conv_out_kernel = c.integer("conv_out_kernel", out.conv_out_kernel);
  // resnet_out_scale_factor and mid_block_only_cross_attention are read by diffusers only for
  // block types this port refuses above, so any value builds the same model.

  c.refuse_any(out.problems());
  return out;
}

int64_t unet2d_condition_config::time_embed_dim() const {
  return time_embedding_dim.value_or(4 * block_out_channels.at(0));
}

std::vector<config_problem> unet2d_condition_config::problems() const {
  std::vector<config_problem> out;
  const auto levels = down_block_types.size();
  if (levels == 0)
    out.push_back({"down_block_types", "no down blocks"});
  auto per_level = [&](const char* key, size_t size) {
    if (size != levels)
      out.push_back({key, std::to_string(size) + " entries for " + std::to_string(levels) +
                            " down blocks"});
  };
  per_level("up_block_types", up_block_types.size());
  per_level("block_out_channels", block_out_channels.size());
  per_level("layers_per_block", layers_per_block.size());
  per_level("attention_head_dim", attention_heads.size());
  per_level("transformer_layers_per_block", transformer_layers_per_block.size());
  if (norm_num_groups <= 0)
    out.push_back({"norm_num_groups", "must be positive"});
  if (!out.empty())
    return out;  // the checks below index every list by level

  for (size_t i = 0; i < levels; ++i) {
    const auto channels = block_out_channels[i];
    const auto level = " (level " + std::to_string(i) + ")";
    if (channels <= 0 || channels % norm_num_groups != 0)
      out.push_back({"block_out_channels", std::to_string(channels) +
                                             " is not a positive multiple of norm_num_groups " +
                                             std::to_string(norm_num_groups) + level});
    if (attention_heads[i] <= 0 || channels % attention_heads[i] != 0)
      out.push_back({"attention_head_dim", std::to_string(attention_heads[i]) +
                                             " heads do not divide " + std::to_string(channels) +
                                             " channels" + level});
    if (layers_per_block[i] <= 0)
      out.push_back({"layers_per_block", "must be positive" + level});
    if (transformer_layers_per_block[i] <= 0)
      out.push_back({"transformer_layers_per_block", "must be positive" + level});
  }
  if (in_channels <= 0)
    out.push_back({"in_channels", "must be positive"});
  if (out_channels <= 0)
    out.push_back({"out_channels", "must be positive"});
  if (cross_attention_dim <= 0)
    out.push_back({"cross_attention_dim", "must be positive"});
  if (conv_in_kernel <= 0 || conv_in_kernel % 2 == 0)
    out.push_back({"conv_in_kernel", "must be odd"});
  if (conv_out_kernel <= 0 || conv_out_kernel % 2 == 0)
    out.push_back({"conv_out_kernel", "must be odd"});
  if (time_embed_dim() <= 0)
    out.push_back({"time_embedding_dim", "must be positive"});
  return out;
}

void unet2d_condition_config::validate() const {
  throw_if_problems("unet2d_condition_config", problems());
}

// Registration order is diffusers' attribute order: conv_in, time_embedding, down_blocks,
// up_blocks, mid_block, conv_norm_out, conv_out.
unet2d_condition_impl::unet2d_condition_impl(unet2d_condition_config config,
                                             const memory_saving_options& memory)
  : config_(std::move(config)) {
  config_.validate();
  const auto& c = config_;
  const auto levels = c.block_out_channels.size();
  conv_in = register_module(
    "conv_in", torch::nn::Conv2d(torch::nn::Conv2dOptions(c.in_channels, c.block_out_channels[0],
                                                          c.conv_in_kernel)
                                   .padding(c.conv_in_kernel / 2)));
  time_embedding = register_module(
    "time_embedding", timestep_embedding(c.block_out_channels[0], c.time_embed_dim(), c.act_fn,
                                         c.timestep_post_act));

  auto level_options = [&](size_t level, bool cross_attention) {
    unet_level_options o;
    o.time_embedding_channels = c.time_embed_dim();
    o.norm_groups = c.norm_num_groups;
    o.norm_eps = c.norm_eps;
    o.activation = c.act_fn;
    o.dropout = c.dropout;
    o.cross_attention = cross_attention;
    o.attention_heads = c.attention_heads[level];
    o.transformer_layers = c.transformer_layers_per_block[level];
    o.cross_attention_dim = c.cross_attention_dim;
    o.use_linear_projection = c.use_linear_projection;
    o.upcast_attention = c.upcast_attention;
    return o;
  };

  down_blocks = register_module("down_blocks", torch::nn::ModuleList());
  for (size_t i = 0; i < levels; ++i) {
    const bool cross = c.down_block_types[i] == unet_down_block_type::cross_attn_down_block_2d;
    const auto in = i == 0 ? c.block_out_channels[0] : c.block_out_channels[i - 1];
    down_blocks->push_back(unet_down_block(level_options(i, cross), in, c.block_out_channels[i],
                                           c.layers_per_block[i], /*add_downsample=*/i + 1 < levels,
                                           c.downsample_padding));
  }

  // Up level i mirrors down level levels-1-i: its per-level settings are read in reverse.
  up_blocks = register_module("up_blocks", torch::nn::ModuleList());
  for (size_t i = 0; i < levels; ++i) {
    const auto mirrored = levels - 1 - i;
    const bool cross = c.up_block_types[i] == unet_up_block_type::cross_attn_up_block_2d;
    const auto out = c.block_out_channels[mirrored];
    const auto prev_output = c.block_out_channels[std::min(mirrored + 1, levels - 1)];
    const auto skip_in = c.block_out_channels[mirrored == 0 ? 0 : mirrored - 1];
    up_blocks->push_back(unet_up_block(level_options(mirrored, cross), skip_in, out, prev_output,
                                       c.layers_per_block[mirrored] + 1,
                                       /*add_upsample=*/i + 1 < levels));
  }

  mid_block = register_module(
    "mid_block", unet_mid_block(level_options(levels - 1, true), c.block_out_channels.back(),
                                c.mid_block_scale_factor));
  conv_norm_out = register_module(
    "conv_norm_out",
    torch::nn::GroupNorm(torch::nn::GroupNormOptions(c.norm_num_groups, c.block_out_channels[0])
                           .eps(c.norm_eps)));
  conv_out = register_module(
    "conv_out", torch::nn::Conv2d(torch::nn::Conv2dOptions(c.block_out_channels[0],
                                                           c.out_channels, c.conv_out_kernel)
                                    .padding(c.conv_out_kernel / 2)));
  apply_memory_saving(*this, memory);
}

torch::Tensor unet2d_condition_impl::forward(const torch::Tensor& sample,
                                             const torch::Tensor& timesteps,
                                             const torch::Tensor& encoder_hidden_states,
                                             const unet_stage_observer& observe) {
  TORCH_CHECK(sample.dim() == 4 && sample.size(1) == config_.in_channels,
              "unet2d_condition: sample must be (N, ", config_.in_channels, ", h, w), got ",
              sample.sizes());
  TORCH_CHECK(encoder_hidden_states.dim() == 3 &&
                encoder_hidden_states.size(2) == config_.cross_attention_dim,
              "unet2d_condition: encoder_hidden_states must be (N, L, ",
              config_.cross_attention_dim, "), got ", encoder_hidden_states.sizes());
  auto seen = [&](const std::string& stage, const torch::Tensor& value) {
    if (observe)
      observe(stage, value);
  };
  const auto batch = sample.size(0);
  auto x = config_.center_input_sample ? 2 * sample - 1.0 : sample;

  auto steps = timesteps.to(sample.device());
  if (steps.dim() == 0)
    steps = steps.unsqueeze(0);
  steps = steps.expand({batch});
  auto projected = sinusoidal_timestep_projection(steps, config_.block_out_channels[0],
                                                  config_.flip_sin_to_cos, config_.freq_shift)
                     .to(sample.scalar_type());
  seen("time_proj", projected);
  auto embedding = time_embedding(projected);
  seen("time_embedding", embedding);
  if (config_.time_embedding_act_fn)
    embedding = apply_activation(*config_.time_embedding_act_fn, embedding);

  x = conv_in(x);
  seen("conv_in", x);
  std::vector<torch::Tensor> skips{x};
  for (size_t i = 0; i < down_blocks->size(); ++i) {
    x = down_blocks->at<unet_down_block_impl>(i).forward(x, embedding, encoder_hidden_states,
                                                         skips);
    seen("down_blocks." + std::to_string(i), x);
  }
  x = mid_block(x, embedding, encoder_hidden_states);
  seen("mid_block", x);
  for (size_t i = 0; i < up_blocks->size(); ++i) {
    auto& block = up_blocks->at<unet_up_block_impl>(i);
    // Upsample to the size of the skip connection the next level concatenates (2x, unless a
    // side was odd on the way down).
    std::vector<int64_t> upsample_size;
    const auto consumed = block.resnets->size();
    if (i + 1 < up_blocks->size() && skips.size() > consumed) {
      const auto& next_skip = skips[skips.size() - consumed - 1];
      upsample_size = {next_skip.size(2), next_skip.size(3)};
    }
    x = block.forward(x, skips, embedding, encoder_hidden_states, upsample_size);
    seen("up_blocks." + std::to_string(i), x);
  }
  x = conv_norm_out(x);
  seen("conv_norm_out", x);
  x = conv_out(apply_activation(config_.act_fn, x));
  seen("conv_out", x);
  return x;
}

} // namespace ddactor
