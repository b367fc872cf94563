// UNet2DConditionModel against diffusers: the tiny fixture's output and every recorded stage in
// float32, the full-size SD 1.5 state_dict against its manifest, an SD 2.x config, and the errors
// a wrong config or weights file gives.
#include "models/sd/unet2d_condition.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <fstream>

#include <sys/resource.h>

#include "models/dit.hpp"
#include "models/sd/diffusers_config.hpp"
#include "models/sd/module_state_loading.hpp"
#include "models/sd/transformer_2d.hpp"
#include "tests/models/sd/reference_fixtures.hpp"

namespace ddactor {
namespace {

using sd_test::fixtures_dir;
using sd_test::relative_error;

const char* const tiny_unet = "tiny_unet";

unet2d_condition load_tiny_unet(const memory_saving_options& memory = {}) {
  const auto folder = fixtures_dir() / tiny_unet;
  unet2d_condition unet(unet2d_condition_config::from_file(folder / "config.json"), memory);
  load_module_state(*unet, folder / "diffusion_pytorch_model.safetensors");
  unet->eval();
  return unet;
}

// The tiny fixture's forward pass: the output and every stage diffusers' hooks recorded.
void expect_tiny_unet_matches_diffusers(unet2d_condition& unet, const std::string& label) {
  const auto io = sd_test::read_tensors(fixtures_dir() / tiny_unet / "io.safetensors");
  std::map<std::string, torch::Tensor> stages;
  torch::Tensor out;
  {
    torch::NoGradGuard no_grad;
    out = unet->forward(io.at("sample"), io.at("timesteps"), io.at("encoder_hidden_states"),
                        [&](const std::string& stage, const torch::Tensor& value) {
                          stages[stage] = value.clone();
                        });
  }
  const auto error = relative_error(out, io.at("out_sample"));
  std::cout << "[ " << label << " ] out_sample: relative error " << error << "\n";
  EXPECT_LE(error, sd_test::reference_tolerance);
  const std::string prefix = "intermediate.";
  size_t compared = 0;
  for (const auto& [key, expected] : io) {
    if (!key.starts_with(prefix))
      continue;
    const auto stage = key.substr(prefix.size());
    ASSERT_TRUE(stages.count(stage)) << "the port never reports stage " << stage;
    ASSERT_EQ(stages.at(stage).sizes(), expected.sizes()) << stage;
    const auto stage_error = relative_error(stages.at(stage), expected);
    std::cout << "[ " << label << " ] " << stage << ": relative error " << stage_error << "\n";
    EXPECT_LE(stage_error, sd_test::reference_tolerance) << stage;
    ++compared;
  }
  EXPECT_EQ(compared, 10u) << "the fixture records 10 stages";
}

TEST(unet2d_condition, tiny_fixture_output_and_every_stage_match_diffusers) {
  DDACTOR_SKIP_WITHOUT_FIXTURE(tiny_unet);
  auto unet = load_tiny_unet();
  expect_tiny_unet_matches_diffusers(unet, "plain");
}

TEST(unet2d_condition, tiny_fixture_matches_with_chunked_attention_and_checkpointing) {
  DDACTOR_SKIP_WITHOUT_FIXTURE(tiny_unet);
  memory_saving_options memory;
  memory.checkpoint_activations = true;
  memory.attention_query_chunk_size = 7;  // 256 and 64 queries: uneven last chunks
  auto unet = load_tiny_unet(memory);
  expect_tiny_unet_matches_diffusers(unet, "chunked attention");
}

TEST(unet2d_condition, sd15_state_dict_matches_the_manifest_exactly) {
  DDACTOR_SKIP_WITHOUT_FIXTURE("manifests/sd15_unet_state_dict_shapes.json");
  const auto manifests = fixtures_dir() / "manifests";
  unet2d_condition unet(unet2d_condition_config::from_file(manifests / "sd15_unet_config.json"));
  const auto elements =
    sd_test::expect_state_matches_manifest(*unet, manifests / "sd15_unet_state_dict_shapes.json");
  const auto summary = sd_test::read_json(manifests / "summary.json").at("sd15_unet");
  EXPECT_EQ(elements, summary.at("parameters").get<int64_t>());
  EXPECT_EQ(count_parameters(*unet), summary.at("parameters").get<int64_t>());
  EXPECT_EQ(module_state(*unet).size(), summary.at("state_dict_tensors").get<size_t>());
}

// stabilityai/stable-diffusion-2-1's unet/config.json (diffusers 0.8 wrote it: older keys only).
const char* const sd21_unet_config = R"({
  "_class_name": "UNet2DConditionModel",
  "_diffusers_version": "0.8.0",
  "act_fn": "silu",
  "attention_head_dim": [5, 10, 20, 20],
  "block_out_channels": [320, 640, 1280, 1280],
  "center_input_sample": false,
  "cross_attention_dim": 1024,
  "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D",
                       "DownBlock2D"],
  "downsample_padding": 1,
  "dual_cross_attention": false,
  "flip_sin_to_cos": true,
  "freq_shift": 0,
  "in_channels": 4,
  "layers_per_block": 2,
  "mid_block_scale_factor": 1,
  "norm_eps": 1e-05,
  "norm_num_groups": 32,
  "num_class_embeds": null,
  "only_cross_attention": false,
  "out_channels": 4,
  "sample_size": 96,
  "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D",
                     "CrossAttnUpBlock2D"],
  "upcast_attention": true,
  "use_linear_projection": true
})";

TEST(unet2d_condition, sd21_config_builds_with_linear_projections_and_wider_context) {
  const auto config =
    unet2d_condition_config::from_config(diffusers_config(nlohmann::json::parse(sd21_unet_config),
                                                          "sd21 unet config"));
  EXPECT_EQ(config.attention_heads, (std::vector<int64_t>{5, 10, 20, 20}));
  EXPECT_TRUE(config.use_linear_projection);
  EXPECT_TRUE(config.upcast_attention);
  unet2d_condition unet(config);
  const auto state = module_state(*unet);
  std::map<std::string, std::vector<int64_t>> shapes;
  for (const auto& [name, tensor] : state)
    shapes[name] = tensor.sizes().vec();
  // SD 1.5's 686 tensors, with linear proj_in/proj_out and 1024-wide attn2 keys and values:
  // 6,389,760 more parameters (256 more inputs x 2 matrices x 12,480 channels of transformers).
  EXPECT_EQ(state.size(), 686u);
  EXPECT_EQ(count_parameters(*unet), 865'910'724);
  EXPECT_EQ(shapes.at("down_blocks.0.attentions.0.proj_in.weight"),
            (std::vector<int64_t>{320, 320}));
  EXPECT_EQ(shapes.at("up_blocks.3.attentions.2.proj_out.weight"),
            (std::vector<int64_t>{320, 320}));
  EXPECT_EQ(shapes.at("mid_block.attentions.0.transformer_blocks.0.attn2.to_k.weight"),
            (std::vector<int64_t>{1280, 1024}));
  // attention_head_dim counts heads: 5 heads of 64 at level 0, 20 of 64 at level 2 and below.
  EXPECT_EQ(unet->down_blocks->at<unet_down_block_impl>(0)
              .attentions->at<transformer_2d_impl>(0)
              .transformer_blocks->at<basic_transformer_block_impl>(0)
              .attn1->options()
              .heads,
            5);
  EXPECT_EQ(unet->mid_block->attentions->at<transformer_2d_impl>(0)
              .transformer_blocks->at<basic_transformer_block_impl>(0)
              .attn2->options()
              .heads,
            20);
  EXPECT_EQ(unet->up_blocks->at<unet_up_block_impl>(3)
              .attentions->at<transformer_2d_impl>(0)
              .transformer_blocks->at<basic_transformer_block_impl>(0)
              .attn1->options()
              .head_dim,
            64);
}

// A small SD 2.x-shaped UNet (per-level heads, linear projections, upcast attention).
unet2d_condition_config small_sd2_like_config() {
  unet2d_condition_config c;
  c.down_block_types = {unet_down_block_type::cross_attn_down_block_2d,
                        unet_down_block_type::cross_attn_down_block_2d};
  c.up_block_types = {unet_up_block_type::cross_attn_up_block_2d,
                      unet_up_block_type::cross_attn_up_block_2d};
  c.block_out_channels = {32, 64};
  c.layers_per_block = {1, 1};
  c.attention_heads = {2, 8};
  c.transformer_layers_per_block = {1, 2};
  c.cross_attention_dim = 24;
  c.norm_num_groups = 8;
  c.use_linear_projection = true;
  c.upcast_attention = true;
  return c;
}

TEST(unet2d_condition, accepts_any_timestep_form_and_sizes_not_divisible_by_its_levels) {
  torch::manual_seed(0);
  unet2d_condition unet(small_sd2_like_config());
  unet->eval();
  torch::NoGradGuard no_grad;
  const auto context = torch::randn({2, 5, 24});
  const auto sample = torch::randn({2, 4, 16, 16});
  const auto batch_steps = unet->forward(sample, torch::tensor({10, 10}), context);
  EXPECT_TRUE(torch::allclose(unet->forward(sample, torch::tensor(10), context), batch_steps));
  EXPECT_TRUE(torch::allclose(unet->forward(sample, torch::tensor({10.0, 10.0}), context),
                              batch_steps));
  // 15 -> 8 on the way down; the upsampler returns to the skip connection's 15.
  EXPECT_EQ(unet->forward(torch::randn({2, 4, 15, 15}), torch::tensor({1, 999}), context).sizes(),
            (std::vector<int64_t>{2, 4, 15, 15}));
}

TEST(unet2d_condition, timestep_projection_is_cos_then_sin_for_flip_sin_to_cos) {
  const auto t = torch::tensor({0.0, 500.0});
  const auto flipped = sinusoidal_timestep_projection(t, 8, true, 0.0);
  const auto plain = sinusoidal_timestep_projection(t, 8, false, 0.0);
  EXPECT_TRUE(torch::equal(flipped.slice(1, 0, 4), plain.slice(1, 4, 8)));
  EXPECT_TRUE(torch::allclose(flipped[0], torch::tensor({1.f, 1.f, 1.f, 1.f, 0.f, 0.f, 0.f, 0.f})));
  // freq_shift 1 (DDPM's layout): frequencies exp(-ln(10^4) * i / 3) for i = 0..3
  const auto shifted = sinusoidal_timestep_projection(torch::tensor({1.0}), 8, false, 1.0);
  EXPECT_NEAR(shifted[0][3].item<double>(), std::sin(std::exp(-std::log(1e4) * 3 / 3.0)), 1e-6);
  EXPECT_EQ(sinusoidal_timestep_projection(t, 7, true, 0.0).size(1), 7);
}

// Writes `config` with `key` set to `value` into a scratch folder and returns the error
// unet2d_condition_config::from_file gives.
std::string config_error(const std::string& key, const nlohmann::json& value) {
  auto config = sd_test::read_json(fixtures_dir() / tiny_unet / "config.json");
  config[key] = value;
  const auto path = sd_test::scratch_dir("unet_config") / "config.json";
  std::ofstream(path) << config.dump(2);
  try {
    unet2d_condition_config::from_file(path);
  } catch (const diffusers_config_error& e) {
    const std::string text = e.what();
    EXPECT_NE(text.find(path.string()), std::string::npos) << text;
    EXPECT_NE(text.find('"' + key + '"'), std::string::npos) << text;
    return text;
  }
  ADD_FAILURE() << key << " = " << value.dump() << " was accepted";
  return {};
}

TEST(unet2d_condition, unsupported_configs_are_refused_naming_file_key_and_value) {
  DDACTOR_SKIP_WITHOUT_FIXTURE(tiny_unet);
  auto text =
    config_error("down_block_types", {"CrossAttnDownBlock2D", "SimpleCrossAttnDownBlock2D"});
  EXPECT_NE(text.find("SimpleCrossAttnDownBlock2D"), std::string::npos) << text;
  text = config_error("up_block_types", {"UpBlock2D", "AttnUpBlock2D"});
  EXPECT_NE(text.find("AttnUpBlock2D"), std::string::npos) << text;
  text = config_error("class_embed_type", "timestep");
  EXPECT_NE(text.find("class embeddings"), std::string::npos) << text;
  text = config_error("addition_embed_type", "text_time");
  EXPECT_NE(text.find("text_time"), std::string::npos) << text;
  config_error("resnet_time_scale_shift", "scale_shift");
  config_error("attention_head_dim", {4, 4, 4});
  config_error("act_fn", "softplus");
  config_error("block_out_channels", {32, 64, 128});
  text = config_error("attention_head_dim", 5);  // 5 heads do not divide 32 channels
  EXPECT_NE(text.find("heads do not divide"), std::string::npos) << text;
  std::filesystem::remove_all(sd_test::scratch_dir("unet_config"));
}

TEST(unet2d_condition, missing_config_file_is_named) {
  const auto path = std::filesystem::temp_directory_path() / "ddactor_no_such_folder/config.json";
  try {
    unet2d_condition_config::from_file(path);
    FAIL() << "read a config that does not exist";
  } catch (const diffusers_config_error& e) {
    EXPECT_NE(std::string(e.what()).find(path.string()), std::string::npos) << e.what();
  }
}

TEST(unet2d_condition, weights_of_wrong_shape_or_truncated_are_refused_naming_file_and_key) {
  DDACTOR_SKIP_WITHOUT_FIXTURE(tiny_unet);
  const auto folder = fixtures_dir() / tiny_unet;
  const auto scratch = sd_test::scratch_dir("unet_weights");
  unet2d_condition unet(unet2d_condition_config::from_file(folder / "config.json"));

  // One tensor transposed.
  auto content = read_safetensors_file(folder / "diffusion_pytorch_model.safetensors");
  const std::string key = "time_embedding.linear_1.weight";  // [128, 32]
  for (auto& tensor : content.tensors)
    if (tensor.name == key)
      std::swap(tensor.shape[0], tensor.shape[1]);
  const auto misshaped = scratch / "misshaped.safetensors";
  write_safetensors_file(misshaped, content);
  try {
    load_module_state(*unet, misshaped);
    FAIL() << "loaded a file with a transposed tensor";
  } catch (const std::runtime_error& e) {
    const std::string text = e.what();
    EXPECT_NE(text.find(misshaped.string()), std::string::npos) << text;
    EXPECT_NE(text.find(key), std::string::npos) << text;
  }

  // The file cut off in the middle of its tensor data.
  const auto truncated = scratch / "truncated.safetensors";
  std::filesystem::copy_file(folder / "diffusion_pytorch_model.safetensors", truncated);
  std::filesystem::resize_file(truncated, std::filesystem::file_size(truncated) / 2);
  try {
    load_module_state(*unet, truncated);
    FAIL() << "loaded a truncated file";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find(truncated.string()), std::string::npos) << e.what();
  }
  std::filesystem::remove_all(scratch);
}

// Gradients of every parameter and of the input, for one loss on the tiny UNet.
std::vector<torch::Tensor> tiny_unet_gradients(const memory_saving_options& memory) {
  auto unet = load_tiny_unet(memory);
  unet->train();
  const auto io = sd_test::read_tensors(fixtures_dir() / tiny_unet / "io.safetensors");
  auto sample = io.at("sample").clone().requires_grad_(true);
  auto out = unet->forward(sample, io.at("timesteps"), io.at("encoder_hidden_states"));
  torch::manual_seed(5);
  (out - torch::randn_like(out)).pow(2).mean().backward();
  std::vector<torch::Tensor> grads{sample.grad()};
  for (const auto& p : unet->parameters())
    grads.push_back(p.grad());
  return grads;
}

TEST(unet2d_condition, checkpointed_and_chunked_training_gives_the_same_gradients) {
  DDACTOR_SKIP_WITHOUT_FIXTURE(tiny_unet);
  const auto plain = tiny_unet_gradients({});
  memory_saving_options memory;
  memory.checkpoint_activations = true;
  memory.attention_query_chunk_size = 50;
  const auto saving = tiny_unet_gradients(memory);
  ASSERT_EQ(plain.size(), saving.size());
  double worst = 0;
  for (size_t i = 0; i < plain.size(); ++i) {
    ASSERT_TRUE(plain[i].defined() && saving[i].defined()) << "gradient " << i;
    worst = std::max(worst, relative_error(saving[i], plain[i]));
  }
  std::cout << "[ gradients ] worst relative error over " << plain.size()
            << " tensors: " << worst << "\n";
  EXPECT_LE(worst, 1e-5);
}

// Measurements, not checks: one training step of the full-size SD 1.5 UNet (random weights) at a
// 32 x 32 latent (DDACTOR_SD15_STEP_LATENT_SIZE overrides it; 64 is SD's 512 px) with a 77-token
// context. Run each alone, so that the process's peak RSS is the step's:
//   ddactor_torch_tests --gtest_also_run_disabled_tests
//     --gtest_filter='unet2d_condition.DISABLED_sd15_training_step_plain'
void measure_sd15_training_step(const memory_saving_options& memory, const char* label) {
  DDACTOR_SKIP_WITHOUT_FIXTURE("manifests/sd15_unet_config.json");
  const char* size_variable = std::getenv("DDACTOR_SD15_STEP_LATENT_SIZE");
  const int64_t size = size_variable ? std::stoll(size_variable) : 32;
  torch::manual_seed(0);
  unet2d_condition unet(
    unet2d_condition_config::from_file(fixtures_dir() / "manifests/sd15_unet_config.json"), memory);
  unet->train();
  const auto sample = torch::randn({1, 4, size, size});
  const auto context = torch::randn({1, 77, 768});
  const auto target = torch::randn({1, 4, size, size});
  const auto start = std::chrono::steady_clock::now();
  auto loss = (unet->forward(sample, torch::tensor({500}), context) - target).pow(2).mean();
  const auto forward_done = std::chrono::steady_clock::now();
  loss.backward();
  const auto done = std::chrono::steady_clock::now();
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  auto seconds = [](auto a, auto b) { return std::chrono::duration<double>(b - a).count(); };
  std::cout << "[ " << label << " ] latent " << size << "x" << size << ", loss "
            << loss.item<double>() << ", forward " << seconds(start, forward_done)
            << " s, backward " << seconds(forward_done, done) << " s, total "
            << seconds(start, done) << " s, peak RSS "
            << static_cast<double>(usage.ru_maxrss) / (1024.0 * 1024.0) << " GiB, "
            << torch::get_num_threads() << " threads\n";
}

TEST(unet2d_condition, DISABLED_sd15_training_step_plain) {
  measure_sd15_training_step({}, "plain");
}

TEST(unet2d_condition, DISABLED_sd15_training_step_checkpointed) {
  memory_saving_options memory;
  memory.checkpoint_activations = true;
  measure_sd15_training_step(memory, "checkpointed");
}

TEST(unet2d_condition, DISABLED_sd15_training_step_checkpointed_chunked_attention) {
  memory_saving_options memory;
  memory.checkpoint_activations = true;
  memory.attention_query_chunk_size = 256;
  measure_sd15_training_step(memory, "checkpointed, 256-query chunks");
}

} // namespace
} // namespace ddactor
