// AutoencoderKL: its config.json, encoder, decoder and latent distribution; see autoencoder_kl.hpp.
#include "models/sd/autoencoder_kl.hpp"

#include <array>
#include <utility>

namespace ddactor {

namespace {

// diffusers' DiagonalGaussianDistribution clamps logvar to this range.
constexpr double min_logvar = -30.0;
constexpr double max_logvar = 20.0;
// The VAE's output GroupNorms use eps 1e-6 whatever the config says.
constexpr double vae_norm_eps = 1e-6;

torch::nn::Conv2d conv3x3(int64_t in, int64_t out) {
  return torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, 3).padding(1));
}

torch::nn::GroupNorm output_norm(int64_t groups, int64_t channels) {
  return torch::nn::GroupNorm(torch::nn::GroupNormOptions(groups, channels).eps(vae_norm_eps));
}

vae_level_options level_options(const autoencoder_kl_config& config) {
  return {config.norm_num_groups, config.act_fn};
}

// A list of block types that must all be `expected` (SD's VAEs have nothing else).
void require_block_types(const diffusers_config& c, std::string_view key,
                         const std::string& expected) {
  for (const auto& name : c.texts(key, {expected}))
    if (name != expected)
      c.refuse(key, "unknown block type \"" + name + "\" (supported: " + expected + ")");
}

} // namespace

autoencoder_kl_config autoencoder_kl_config::from_file(const std::filesystem::path& path) {
  return from_config(diffusers_config::from_file(path));
}

autoencoder_kl_config autoencoder_kl_config::from_config(const diffusers_config& c) {
  c.require_class("AutoencoderKL");
  // Keys of later diffusers versions that switch parts off.
  c.require_default("use_quant_conv", true, "a VAE without quant_conv");
  c.require_default("use_post_quant_conv", true, "a VAE without post_quant_conv");
  c.require_default("mid_block_add_attention", true, "a VAE mid block without attention");
  c.require_default("shift_factor", nullptr, "a latent shift factor");
  c.require_default("latents_mean", nullptr, "per-channel latent statistics");
  c.require_default("latents_std", nullptr, "per-channel latent statistics");
  require_block_types(c, "down_block_types", "DownEncoderBlock2D");
  require_block_types(c, "up_block_types", "UpDecoderBlock2D");

  autoencoder_kl_config out;
  out.in_channels = c.integer("in_channels", out.in_channels);
  out.out_channels = c.integer("out_channels", out.out_channels);
  out.block_out_channels = c.integers("block_out_channels", out.block_out_channels);
  const auto levels = out.block_out_channels.size();
  // diffusers builds one level per block type (one by default) and reads block_out_channels
  // per level.
  for (const char* key : {"down_block_types", "up_block_types"})
    if (c.texts(key, {"one level"}).size() != levels)
      c.refuse(key, "expected one entry per block_out_channels entry (" +
                      std::to_string(levels) + ")");
  out.layers_per_block = c.integer("layers_per_block", out.layers_per_block);
  auto act = c.text("act_fn", "silu");
  auto function = activation_from_name(act);
  if (!function)
    c.refuse("act_fn", "unknown activation (known: silu, swish, mish, gelu, relu)");
  out.act_fn = *function;
  out.latent_channels = c.integer("latent_channels", out.latent_channels);
  out.norm_num_groups = c.integer("norm_num_groups", out.norm_num_groups);
  out.sample_size = c.integer("sample_size", out.sample_size);
  out.scaling_factor = c.number("scaling_factor", out.scaling_factor);
  out.force_upcast = c.boolean("force_upcast", out.force_upcast);
  c.refuse_any(out.problems());
  return out;
}

std::vector<config_problem> autoencoder_kl_config::problems() const {
  std::vector<config_problem> out;
  if (block_out_channels.empty())
    out.push_back({"block_out_channels", "is empty"});
  if (norm_num_groups <= 0)
    out.push_back({"norm_num_groups", "must be positive"});
  else
    for (auto channels : block_out_channels)
      if (channels <= 0 || channels % norm_num_groups != 0)
        out.push_back({"block_out_channels", std::to_string(channels) +
                                               " is not a positive multiple of norm_num_groups " +
                                               std::to_string(norm_num_groups)});
  if (layers_per_block <= 0)
    out.push_back({"layers_per_block", "must be positive"});
  for (auto [key, value] : {std::pair{"in_channels", in_channels},
                            std::pair{"out_channels", out_channels},
                            std::pair{"latent_channels", latent_channels}})
    if (value <= 0)
      out.push_back({key, "must be positive"});
  if (scaling_factor <= 0)
    out.push_back({"scaling_factor", "must be positive"});
  return out;
}

void autoencoder_kl_config::validate() const {
  throw_if_problems("autoencoder_kl_config", problems());
}

latent_distribution latent_distribution::from_moments(const torch::Tensor& moments) {
  auto halves = moments.chunk(2, 1);
  latent_distribution out;
  out.mean = halves[0];
  out.logvar = halves[1].clamp(min_logvar, max_logvar);
  out.std = (0.5 * out.logvar).exp();
  return out;
}

torch::Tensor latent_distribution::sample(const torch::Tensor& noise) const {
  TORCH_CHECK(noise.sizes() == mean.sizes(), "latent_distribution::sample: noise of shape ",
              noise.sizes(), " for latents of shape ", mean.sizes());
  return mean + std * noise;
}

torch::Tensor latent_distribution::sample(std::optional<at::Generator> generator) const {
  auto noise = generator ? torch::randn(mean.sizes(), *generator, mean.options())
                         : torch::randn(mean.sizes(), mean.options());
  return sample(noise);
}

torch::Tensor latent_distribution::kl() const {
  return 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).sum({1, 2, 3});
}

// Registration order is diffusers' attribute order (conv_in, down_blocks, mid_block,
// conv_norm_out, conv_out), so that the state_dict lists its keys in the same order.
vae_encoder_impl::vae_encoder_impl(const autoencoder_kl_config& config) {
  const auto& channels = config.block_out_channels;
  const auto level = level_options(config);
  conv_in = register_module("conv_in", conv3x3(config.in_channels, channels.front()));
  down_blocks = register_module("down_blocks", torch::nn::ModuleList());
  for (size_t i = 0; i < channels.size(); ++i)
    down_blocks->push_back(vae_down_block(level, i == 0 ? channels[0] : channels[i - 1],
                                          channels[i], config.layers_per_block,
                                          /*add_downsample=*/i + 1 < channels.size()));
  mid_block = register_module("mid_block", vae_mid_block(level, channels.back()));
  conv_norm_out =
    register_module("conv_norm_out", output_norm(config.norm_num_groups, channels.back()));
  // Mean and log-variance.
  conv_out = register_module("conv_out", conv3x3(channels.back(), 2 * config.latent_channels));
}

torch::Tensor vae_encoder_impl::forward(const torch::Tensor& images) {
  auto h = conv_in(images);
  for (size_t i = 0; i < down_blocks->size(); ++i)
    h = down_blocks->at<vae_down_block_impl>(i).forward(h);
  h = mid_block(h);
  // diffusers' Encoder uses SiLU here whatever act_fn says.
  return conv_out(torch::silu(conv_norm_out(h)));
}

// Registration order: conv_in, up_blocks, mid_block, conv_norm_out, conv_out (diffusers assigns
// up_blocks before it builds the mid block).
vae_decoder_impl::vae_decoder_impl(const autoencoder_kl_config& config) {
  const auto& channels = config.block_out_channels;
  const auto level = level_options(config);
  conv_in = register_module("conv_in", conv3x3(config.latent_channels, channels.back()));
  up_blocks = register_module("up_blocks", torch::nn::ModuleList());
  const auto levels = channels.size();
  for (size_t i = 0; i < levels; ++i) {
    const auto in = channels[levels - 1 - (i == 0 ? 0 : i - 1)];
    up_blocks->push_back(vae_up_block(level, in, channels[levels - 1 - i],
                                      config.layers_per_block + 1,
                                      /*add_upsample=*/i + 1 < levels));
  }
  mid_block = register_module("mid_block", vae_mid_block(level, channels.back()));
  conv_norm_out =
    register_module("conv_norm_out", output_norm(config.norm_num_groups, channels.front()));
  conv_out = register_module("conv_out", conv3x3(channels.front(), config.out_channels));
}

torch::Tensor vae_decoder_impl::forward(const torch::Tensor& latents) {
  auto h = mid_block(conv_in(latents));
  for (size_t i = 0; i < up_blocks->size(); ++i)
    h = up_blocks->at<vae_up_block_impl>(i).forward(h);
  return conv_out(torch::silu(conv_norm_out(h)));
}

autoencoder_kl_impl::autoencoder_kl_impl(autoencoder_kl_config config)
  : config_(std::move(config)) {
  config_.validate();
  const auto latent = config_.latent_channels;
  encoder = register_module("encoder", vae_encoder(config_));
  decoder = register_module("decoder", vae_decoder(config_));
  quant_conv = register_module("quant_conv", torch::nn::Conv2d(2 * latent, 2 * latent, 1));
  post_quant_conv = register_module("post_quant_conv", torch::nn::Conv2d(latent, latent, 1));
}

latent_distribution autoencoder_kl_impl::encode(const torch::Tensor& images) {
  TORCH_CHECK(images.dim() == 4 && images.size(1) == config_.in_channels,
              "autoencoder_kl: images must be (N, ", config_.in_channels, ", H, W), got ",
              images.sizes());
  return latent_distribution::from_moments(quant_conv(encoder(images)));
}

torch::Tensor autoencoder_kl_impl::decode(const torch::Tensor& latents) {
  TORCH_CHECK(latents.dim() == 4 && latents.size(1) == config_.latent_channels,
              "autoencoder_kl: latents must be (N, ", config_.latent_channels, ", h, w), got ",
              latents.sizes());
  return decoder(post_quant_conv(latents));
}

torch::Tensor autoencoder_kl_impl::encode_to_latents(const torch::Tensor& images) {
  return encode(images).mean * config_.scaling_factor;
}

torch::Tensor autoencoder_kl_impl::encode_to_sampled_latents(
  const torch::Tensor& images, std::optional<at::Generator> generator) {
  return encode(images).sample(std::move(generator)) * config_.scaling_factor;
}

torch::Tensor autoencoder_kl_impl::decode_latents(const torch::Tensor& latents) {
  return decode(latents / config_.scaling_factor);
}

std::string autoencoder_kl_current_key(const std::string& file_key) {
  // diffusers' _convert_deprecated_attention_blocks: the same renaming, for the attention of each
  // mid block (the only attention in an AutoencoderKL).
  static const std::array<std::pair<std::string_view, std::string_view>, 4> renamed = {{
    {"query.", "to_q."}, {"key.", "to_k."}, {"value.", "to_v."}, {"proj_attn.", "to_out.0."}}};
  constexpr std::string_view attentions = ".mid_block.attentions.";
  const auto at = file_key.find(attentions);
  if (at == std::string::npos)
    return file_key;
  // "<encoder|decoder>.mid_block.attentions.<i>.<layer>.<weight|bias>"
  const auto index_end = file_key.find('.', at + attentions.size());
  if (index_end == std::string::npos)
    return file_key;
  const std::string_view layer = std::string_view(file_key).substr(index_end + 1);
  for (const auto& [old_name, new_name] : renamed)
    if (layer.starts_with(old_name) && layer.find('.', old_name.size()) == std::string::npos)
      return file_key.substr(0, index_end + 1) + std::string(new_name) +
             std::string(layer.substr(old_name.size()));
  return file_key;
}

module_state_options autoencoder_kl_state_options() {
  module_state_options options;
  options.module_name_for_file_key = autoencoder_kl_current_key;
  return options;
}

} // namespace ddactor
