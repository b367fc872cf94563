// AutoencoderKL against diffusers: the tiny fixture's encode (mean, logvar, std) and decode with
// their recorded stages in float32, the full-size SD VAE state_dict against its manifest, weights
// in the pre-0.14 attention naming, the latent scaling helpers and config errors.
#include "models/sd/autoencoder_kl.hpp"

#include <gtest/gtest.h>

#include <fstream>

#include "models/dit.hpp"
#include "models/sd/module_state_loading.hpp"
#include "tests/models/sd/reference_fixtures.hpp"

namespace ddactor {
namespace {

using sd_test::fixtures_dir;
using sd_test::relative_error;

const char* const tiny_vae = "tiny_vae";

std::filesystem::path tiny_vae_weights() {
  return fixtures_dir() / tiny_vae / "diffusion_pytorch_model.safetensors";
}

autoencoder_kl build_tiny_vae() {
  const auto config = autoencoder_kl_config::from_file(fixtures_dir() / tiny_vae / "config.json");
  return autoencoder_kl(config);
}

void expect_matches(const torch::Tensor& actual, const torch::Tensor& expected,
                    const std::string& what) {
  ASSERT_EQ(actual.sizes(), expected.sizes()) << what;
  const auto error = relative_error(actual, expected);
  std::cout << "[ tiny_vae ] " << what << ": relative error " << error << "\n";
  EXPECT_LE(error, sd_test::reference_tolerance) << what;
}

TEST(autoencoder_kl, tiny_fixture_encode_and_decode_match_diffusers) {
  DDACTOR_SKIP_WITHOUT_FIXTURE(tiny_vae);
  auto vae = build_tiny_vae();
  load_module_state(*vae, tiny_vae_weights(), autoencoder_kl_state_options());
  vae->eval();
  torch::NoGradGuard no_grad;
  const auto io = sd_test::read_tensors(fixtures_dir() / tiny_vae / "io.safetensors");

  const auto encoded = vae->encoder(io.at("image"));
  expect_matches(encoded, io.at("intermediate.encode.encoder"), "encoder");
  expect_matches(vae->quant_conv(encoded), io.at("intermediate.encode.quant_conv"), "quant_conv");
  const auto distribution = vae->encode(io.at("image"));
  expect_matches(distribution.mean, io.at("latent_dist_mean"), "latent_dist_mean");
  expect_matches(distribution.logvar, io.at("latent_dist_logvar"), "latent_dist_logvar");
  expect_matches(distribution.std, io.at("latent_dist_std"), "latent_dist_std");

  const auto post_quant = vae->post_quant_conv(io.at("latent"));
  expect_matches(post_quant, io.at("intermediate.decode.post_quant_conv"), "post_quant_conv");
  expect_matches(vae->decoder(post_quant), io.at("intermediate.decode.decoder"), "decoder");
  expect_matches(vae->decode(io.at("latent")), io.at("decoded"), "decoded");
}

TEST(autoencoder_kl, scaling_helpers_apply_the_scaling_factor_as_pipelines_do) {
  DDACTOR_SKIP_WITHOUT_FIXTURE(tiny_vae);
  auto vae = build_tiny_vae();
  load_module_state(*vae, tiny_vae_weights());
  vae->eval();
  torch::NoGradGuard no_grad;
  const auto io = sd_test::read_tensors(fixtures_dir() / tiny_vae / "io.safetensors");
  const double scale = vae->config().scaling_factor;
  EXPECT_EQ(scale, 0.18215);

  const auto distribution = vae->encode(io.at("image"));
  EXPECT_TRUE(torch::allclose(vae->encode_to_latents(io.at("image")), distribution.mean * scale));
  auto generator = at::detail::createCPUGenerator(42);
  const auto sampled = vae->encode_to_sampled_latents(io.at("image"), generator);
  auto same_seed = at::detail::createCPUGenerator(42);
  const auto noise = torch::randn(distribution.mean.sizes(), same_seed, torch::kFloat32);
  const auto noised = distribution.mean + distribution.std * noise;
  EXPECT_TRUE(torch::allclose(sampled, noised * scale));
  EXPECT_TRUE(torch::allclose(distribution.sample(noise), noised));
  EXPECT_TRUE(torch::allclose(vae->decode_latents(io.at("latent") * scale),
                              vae->decode(io.at("latent")), 1e-5, 1e-6));
  EXPECT_EQ(distribution.kl().sizes(), (std::vector<int64_t>{1}));
}

TEST(autoencoder_kl, weights_in_the_pre_0_14_attention_naming_load_through_the_renaming) {
  DDACTOR_SKIP_WITHOUT_FIXTURE(tiny_vae);
  // The fixture's weights with the mid-block attention named as diffusers < 0.14 saved it.
  auto content = read_safetensors_file(tiny_vae_weights());
  const std::map<std::string, std::string> old_names = {
    {"to_q", "query"}, {"to_k", "key"}, {"to_v", "value"}, {"to_out.0", "proj_attn"}};
  size_t renamed = 0;
  for (auto& tensor : content.tensors)
    for (const auto& [current, old] : old_names) {
      const auto at = tensor.name.find(".attentions.0." + current + ".");
      if (at != std::string::npos) {
        tensor.name.replace(at + 14, current.size(), old);
        ++renamed;
      }
    }
  EXPECT_EQ(renamed, 16u);  // weight and bias of 4 layers, in the encoder and the decoder
  const auto scratch = sd_test::scratch_dir("vae_legacy");
  const auto legacy = scratch / "diffusion_pytorch_model.safetensors";
  write_safetensors_file(legacy, content);

  auto vae = build_tiny_vae();
  try {
    load_module_state(*vae, legacy);
    FAIL() << "old names loaded without the renaming";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("decoder.mid_block.attentions.0.key.bias"),
              std::string::npos)
      << e.what();
  }
  load_module_state(*vae, legacy, autoencoder_kl_state_options());
  auto reference = build_tiny_vae();
  load_module_state(*reference, tiny_vae_weights());
  const auto loaded = module_state(*vae), expected = module_state(*reference);
  ASSERT_EQ(loaded.size(), expected.size());
  for (size_t i = 0; i < loaded.size(); ++i)
    EXPECT_TRUE(torch::equal(loaded[i].second, expected[i].second)) << loaded[i].first;
  std::filesystem::remove_all(scratch);
}

TEST(autoencoder_kl, legacy_key_renaming_touches_only_the_mid_block_attention) {
  EXPECT_EQ(autoencoder_kl_current_key("decoder.mid_block.attentions.0.proj_attn.bias"),
            "decoder.mid_block.attentions.0.to_out.0.bias");
  EXPECT_EQ(autoencoder_kl_current_key("encoder.mid_block.attentions.0.key.weight"),
            "encoder.mid_block.attentions.0.to_k.weight");
  EXPECT_EQ(autoencoder_kl_current_key("encoder.mid_block.attentions.0.group_norm.weight"),
            "encoder.mid_block.attentions.0.group_norm.weight");
  EXPECT_EQ(autoencoder_kl_current_key("encoder.down_blocks.0.resnets.0.conv1.weight"),
            "encoder.down_blocks.0.resnets.0.conv1.weight");
  EXPECT_EQ(autoencoder_kl_current_key("encoder.mid_block.attentions.0.to_q.weight"),
            "encoder.mid_block.attentions.0.to_q.weight");
}

TEST(autoencoder_kl, sd_vae_state_dict_matches_the_manifest_exactly) {
  DDACTOR_SKIP_WITHOUT_FIXTURE("manifests/sd_vae_state_dict_shapes.json");
  const auto manifests = fixtures_dir() / "manifests";
  autoencoder_kl vae(autoencoder_kl_config::from_file(manifests / "sd_vae_config.json"));
  const auto elements =
    sd_test::expect_state_matches_manifest(*vae, manifests / "sd_vae_state_dict_shapes.json");
  const auto summary = sd_test::read_json(manifests / "summary.json").at("sd_vae");
  EXPECT_EQ(elements, summary.at("parameters").get<int64_t>());
  EXPECT_EQ(count_parameters(*vae), summary.at("parameters").get<int64_t>());
  EXPECT_EQ(module_state(*vae).size(), summary.at("state_dict_tensors").get<size_t>());
}

TEST(autoencoder_kl, unsupported_configs_are_refused_naming_file_key_and_value) {
  DDACTOR_SKIP_WITHOUT_FIXTURE(tiny_vae);
  const auto scratch = sd_test::scratch_dir("vae_config");
  auto refused = [&](const std::string& key, const nlohmann::json& value) {
    auto config = sd_test::read_json(fixtures_dir() / tiny_vae / "config.json");
    config[key] = value;
    const auto path = scratch / "config.json";
    std::ofstream(path) << config.dump(2);
    try {
      autoencoder_kl_config::from_file(path);
      ADD_FAILURE() << key << " = " << value.dump() << " was accepted";
    } catch (const diffusers_config_error& e) {
      const std::string text = e.what();
      EXPECT_NE(text.find(path.string()), std::string::npos) << text;
      EXPECT_NE(text.find('"' + key + '"'), std::string::npos) << text;
      EXPECT_NE(text.find(value.dump()), std::string::npos) << text;
    }
  };
  refused("down_block_types", {"DownEncoderBlock2D", "AttnDownEncoderBlock2D"});
  refused("up_block_types", {"UpDecoderBlock2D"});
  refused("_class_name", "VQModel");
  refused("latent_channels", 0);
  refused("layers_per_block", 0);
  refused("act_fn", "softplus");
  std::filesystem::remove_all(scratch);
}

} // namespace
} // namespace ddactor
