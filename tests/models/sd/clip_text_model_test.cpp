// The CLIP text encoder against transformers 4.36: the tiny fixture model's outputs (every
// layer's hidden state, last_hidden_state, pooled output and end-token positions) within 1e-4
// relative error, loaded the way users load it; the full-size ViT-L/14 text model's state_dict
// names, order, shapes and parameter count against the manifest; the end-token rules; clip skip;
// and config errors that name the offending key.
#include "models/sd/clip_text_model.hpp"

#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdio>
#include <fstream>

#include "models/sd/module_state_loading.hpp"
#include "models/sd/python_json.hpp"
#include "tests/models/sd/sd1_fixture_io.hpp"

namespace ddactor {
namespace {

namespace fs = std::filesystem;
using sd1_fixtures::relative_error;

// The bound the port is held to (max|a-b| / max|b|, float32).
constexpr double max_relative_error = 1e-4;

struct tiny_clip_fixture {
  clip_text_model model{nullptr};
  std::map<std::string, torch::Tensor> io;
};

// The tiny model loaded from its folder as a user loads a text encoder, and its reference io.
tiny_clip_fixture load_tiny_clip() {
  const fs::path folder = sd1_fixtures::folder() / "tiny_clip_text";
  tiny_clip_fixture out;
  out.model = load_clip_text_model(read_diffusers_model_part(folder, "CLIPTextModel"));
  out.io = sd1_fixtures::read_tensors(folder / "io.safetensors");
  return out;
}

#define SKIP_WITHOUT_TINY_CLIP()                                                                  \
  do {                                                                                            \
    const auto why = sd1_fixtures::missing(sd1_fixtures::folder() / "tiny_clip_text" /            \
                                           "io.safetensors");                                     \
    if (!why.empty())                                                                             \
      GTEST_SKIP() << why;                                                                        \
  } while (false)

void expect_close(const char* what, const torch::Tensor& actual, const torch::Tensor& expected) {
  ASSERT_EQ(actual.sizes(), expected.sizes()) << what;
  const double error = relative_error(actual, expected);
  std::printf("[ clip     ] %-28s max relative error %.3g\n", what, error);
  EXPECT_LE(error, max_relative_error) << what;
}

TEST(clip_text_model, tiny_fixture_matches_transformers_at_every_layer) {
  SKIP_WITHOUT_TINY_CLIP();
  auto [model, io] = load_tiny_clip();
  torch::NoGradGuard no_grad;
  const auto out = model->forward(io.at("input_ids"));

  ASSERT_EQ(out.hidden_states.size(), 3u);
  for (size_t i = 0; i < out.hidden_states.size(); ++i) {
    const auto key = "intermediate.hidden_states." + std::to_string(i);
    expect_close(key.c_str(), out.hidden_states[i], io.at(key));
  }
  expect_close("last_hidden_state", out.last_hidden_state, io.at("last_hidden_state"));
  expect_close("pooler_output", out.pooled_output, io.at("pooler_output"));
  EXPECT_TRUE(torch::equal(clip_end_token_positions(io.at("input_ids"), model->config.eos_token_id),
                           io.at("eos_positions")));
}

TEST(clip_text_model, causal_attention_makes_a_shorter_input_a_prefix_of_the_output) {
  SKIP_WITHOUT_TINY_CLIP();
  auto [model, io] = load_tiny_clip();
  torch::NoGradGuard no_grad;
  constexpr int64_t prefix = 10;
  const auto ids = io.at("input_ids").slice(1, 0, prefix);
  const auto out = model->forward(ids);
  expect_close("last_hidden_state[:, :10]", out.last_hidden_state,
               io.at("last_hidden_state").slice(1, 0, prefix));
}

TEST(clip_text_model, clip_skip_takes_an_earlier_layer_through_final_layer_norm) {
  SKIP_WITHOUT_TINY_CLIP();
  auto [model, io] = load_tiny_clip();
  torch::NoGradGuard no_grad;
  const auto& ids = io.at("input_ids");
  EXPECT_TRUE(torch::equal(model->prompt_embeddings(ids, 0), model->forward(ids).last_hidden_state));
  // diffusers: final_layer_norm(hidden_states[-(clip_skip + 1)]); with 2 layers, clip_skip 1 is
  // the output of layer 0.
  const auto expected = model->text_model->final_layer_norm(io.at("intermediate.hidden_states.1"));
  expect_close("clip_skip 1", model->prompt_embeddings(ids, 1), expected);
  EXPECT_THROW(model->prompt_embeddings(ids, 3), c10::Error);
}

TEST(clip_text_model, older_checkpoints_with_position_ids_load) {
  SKIP_WITHOUT_TINY_CLIP();
  const fs::path folder = sd1_fixtures::folder() / "tiny_clip_text";
  auto content = read_safetensors_file(folder / "model.safetensors");
  stored_tensor position_ids{"text_model.embeddings.position_ids", tensor_dtype::i64, {1, 77}, {}};
  position_ids.data.resize(77 * sizeof(int64_t));
  content.tensors.push_back(position_ids);
  const fs::path file =
    fs::temp_directory_path() / ("ddactor_clip_position_ids_" + std::to_string(::getpid()) +
                                 ".safetensors");
  write_safetensors_file(file, content);

  clip_text_model model(clip_text_config_from_json(read_python_json_file(folder / "config.json")));
  EXPECT_NO_THROW(load_module_state(*model, file, {clip_text_ignored_keys()}));
  fs::remove(file);
}

TEST(clip_text_model, vit_l14_state_dict_matches_the_manifest_exactly) {
  const fs::path manifests = sd1_fixtures::folder() / "manifests";
  const auto why = sd1_fixtures::missing(manifests / "clip_vit_l14_text_state_dict_shapes.json");
  if (!why.empty())
    GTEST_SKIP() << why;
  std::ifstream shapes_file(manifests / "clip_vit_l14_text_state_dict_shapes.json");
  // ordered_json keeps the manifest's order, which is transformers' state_dict order.
  const auto shapes = nlohmann::ordered_json::parse(shapes_file);
  const auto summary = read_python_json_file(manifests / "summary.json").at("clip_vit_l14_text");

  clip_text_model model(
    clip_text_config_from_json(read_python_json_file(manifests / "clip_vit_l14_text_config.json")));
  const auto state = module_state(*model);
  ASSERT_EQ(state.size(), shapes.size());
  EXPECT_EQ(static_cast<int64_t>(state.size()), summary.at("state_dict_tensors").get<int64_t>());
  int64_t parameters = 0;
  size_t i = 0;
  for (const auto& [name, shape] : shapes.items()) {
    EXPECT_EQ(state[i].first, name) << "at position " << i;
    EXPECT_EQ(state[i].second.sizes().vec(), shape.get<std::vector<int64_t>>()) << name;
    parameters += state[i].second.numel();
    ++i;
  }
  EXPECT_EQ(parameters, summary.at("parameters").get<int64_t>());
  EXPECT_EQ(parameters, 123'060'480);
}

// One row of token ids, (1, L) int64.
torch::Tensor token_row(std::vector<int64_t> ids) {
  const auto length = static_cast<int64_t>(ids.size());
  return torch::tensor(ids, torch::kInt64).view({1, length});
}

TEST(clip_text_model, end_token_is_the_largest_id_under_the_legacy_eos_and_the_first_eos_otherwise) {
  const auto eos_padded = token_row({49406, 320, 49407, 49407, 49407});
  const auto zero_padded = token_row({49406, 320, 49407, 0, 0});
  EXPECT_EQ(clip_end_token_positions(eos_padded, clip_legacy_eos_token_id).item<int64_t>(), 2);
  EXPECT_EQ(clip_end_token_positions(zero_padded, clip_legacy_eos_token_id).item<int64_t>(), 2);
  EXPECT_EQ(clip_end_token_positions(eos_padded, 49407).item<int64_t>(), 2);

  // A token added after the vocabulary (id above <|endoftext|>) fools only the legacy rule.
  const auto added = token_row({49406, 49408, 49407, 49407});
  EXPECT_EQ(clip_end_token_positions(added, clip_legacy_eos_token_id).item<int64_t>(), 1);
  EXPECT_EQ(clip_end_token_positions(added, 49407).item<int64_t>(), 2);
  // No end token at all: position 0, as transformers' argmax over all-false gives.
  EXPECT_EQ(clip_end_token_positions(added, 7).item<int64_t>(), 0);
}

TEST(clip_text_model, config_defaults_are_transformers_and_errors_name_the_key) {
  const auto defaults = clip_text_config_from_json(nlohmann::json::object());
  EXPECT_EQ(defaults.hidden_size, 512);
  EXPECT_EQ(defaults.eos_token_id, 49407);
  EXPECT_EQ(defaults.hidden_act, clip_activation::quick_gelu);
  EXPECT_EQ(clip_text_config_from_json({{"hidden_act", "gelu"}}).hidden_act, clip_activation::gelu);
  EXPECT_EQ(clip_text_config_from_json({{"hidden_act", "gelu_new"}}).hidden_act,
            clip_activation::gelu_new);

  auto message = [](const nlohmann::json& config) -> std::string {
    try {
      clip_text_config_from_json(config);
    } catch (const std::invalid_argument& e) {
      return e.what();
    }
    return "no error";
  };
  EXPECT_NE(message({{"hidden_act", "relu"}}).find("hidden_act \"relu\""), std::string::npos);
  EXPECT_NE(message({{"hidden_size", "768"}}).find("hidden_size must be an integer"),
            std::string::npos);
  EXPECT_NE(message({{"hidden_size", 100}, {"num_attention_heads", 12}}).find("divisible"),
            std::string::npos);
  EXPECT_NE(message({{"num_hidden_layers", 0}}).find("num_hidden_layers must be positive"),
            std::string::npos);
  EXPECT_NE(message({{"model_type", "clip"}}).find("model_type"), std::string::npos);
}

TEST(clip_text_model, load_names_the_config_file_of_a_config_it_cannot_take) {
  diffusers_model_part part;
  part.config_file = "/nowhere/text_encoder/config.json";
  part.config = {{"hidden_act", "relu"}};
  try {
    load_clip_text_model(part);
    FAIL() << "loaded a relu CLIP";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("/nowhere/text_encoder/config.json"), std::string::npos)
      << e.what();
  }
}

} // namespace
} // namespace ddactor
