// Diffusers pipeline folders assembled in a temporary directory from the tiny SD 1.x fixtures
// (UNet, VAE, CLIP text encoder, the fixture BPE vocabulary) with a model_index.json like the one
// StableDiffusionPipeline.save_pretrained writes: the folder reads, its text encoder runs and
// matches transformers, only required parts are read, each kind of damage ends in an error that
// names the file (and the key), the fp16 variant is chosen by diffusers' rule, and a folder
// written back with a changed UNet reads back holding exactly the module's tensors.
#include "models/sd/diffusers_folder.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <initializer_list>
#include <sstream>
#include <tuple>

#include "models/sd/clip_text_model.hpp"
#include "models/sd/module_state_loading.hpp"
#include "tests/models/sd/sd1_fixture_io.hpp"
#include "tests/models/sd/tiny_sd_folder.hpp"
#include "tests/temporary_folder.hpp"

namespace ddactor {
namespace {

namespace fs = std::filesystem;

// Every folder of these tests: a name of their own in /tmp.
struct temporary_folder : testing::temporary_folder {
  temporary_folder() : testing::temporary_folder("ddactor_diffusers") {}
};

void write_text(const fs::path& file, const std::string& text) { tiny_sd::write_file(file, text); }

std::string read_bytes(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

std::string fixture_gap() {
  for (const auto* file : {"tiny_unet/diffusion_pytorch_model.safetensors",
                           "tiny_vae/diffusion_pytorch_model.safetensors",
                           "tiny_clip_text/model.safetensors", "tiny_clip_text/io.safetensors",
                           "clip_tokenizer/vocab.json", "clip_tokenizer/merges.txt"}) {
    auto why = sd1_fixtures::missing(sd1_fixtures::folder() / file);
    if (!why.empty())
      return why;
  }
  return {};
}

#define SKIP_WITHOUT_FIXTURES()                                                                   \
  do {                                                                                            \
    const auto why = fixture_gap();                                                               \
    if (!why.empty())                                                                             \
      GTEST_SKIP() << why;                                                                        \
  } while (false)

// The message of the diffusers_folder_error reading `root` ends in, or a note that none came.
std::string read_error(const fs::path& root, const diffusers_folder_options& options = {}) {
  try {
    read_diffusers_folder(root, options);
  } catch (const diffusers_folder_error& e) {
    return e.what();
  }
  return "(no error)";
}

void expect_mentions(const std::string& message, std::initializer_list<std::string> words) {
  for (const auto& word : words)
    EXPECT_NE(message.find(word), std::string::npos) << "\"" << word << "\" not in: " << message;
}

void set_model_index_entry(const fs::path& root, const std::string& key, nlohmann::json value) {
  auto index = nlohmann::json::parse(read_bytes(root / "model_index.json"));
  if (value.is_null())
    index.erase(key);
  else
    index[key] = std::move(value);
  write_text(root / "model_index.json", index.dump(2));
}

// The fixture's text encoder weights in float16, as `model.fp16.safetensors` is saved.
void write_fp16_text_encoder(const fs::path& file) {
  auto content = read_safetensors_file(sd1_fixtures::folder() / "tiny_clip_text" /
                                       "model.safetensors");
  for (auto& stored : content.tensors) {
    const auto half = sd1_fixtures::to_torch(stored).to(torch::kFloat16).contiguous();
    stored.dtype = tensor_dtype::f16;
    stored.data.resize(static_cast<size_t>(half.nbytes()));
    std::memcpy(stored.data.data(), half.data_ptr(), stored.data.size());
  }
  write_safetensors_file(file, content);
}

// A module whose state has exactly the keys and shapes of a safetensors file, standing in for
// the UNet port: nested plain modules along the dotted names.
std::shared_ptr<torch::nn::Module> module_shaped_like(const fs::path& file) {
  auto root = std::make_shared<torch::nn::Module>();
  const safetensors_reader reader(file);
  for (const auto& entry : reader.entries()) {
    auto node = root;
    std::string_view rest = entry.name;
    for (auto dot = rest.find('.'); dot != std::string_view::npos; dot = rest.find('.')) {
      const std::string name(rest.substr(0, dot));
      const auto children = node->named_children();
      const auto* child = children.find(name);
      node = child != nullptr ? *child
                              : node->register_module(name, std::make_shared<torch::nn::Module>());
      rest.remove_prefix(dot + 1);
    }
    node->register_parameter(std::string(rest), torch::zeros(entry.shape));
  }
  return root;
}

TEST(diffusers_folder, reads_an_assembled_sd1_folder_and_its_text_encoder_runs) {
  SKIP_WITHOUT_FIXTURES();
  temporary_folder root;
  tiny_sd::assemble(root.path());

  const auto folder = read_diffusers_folder(root.path());
  EXPECT_EQ(folder.pipeline_class, "StableDiffusionPipeline");
  ASSERT_TRUE(folder.unet && folder.vae && folder.text_encoder && folder.tokenizer &&
              folder.scheduler);
  EXPECT_EQ(folder.unet->class_name, "UNet2DConditionModel");
  EXPECT_EQ(folder.unet->weights_file,
            root.path() / "unet" / "diffusion_pytorch_model.safetensors");
  EXPECT_EQ(folder.unet->weights_variant, "");
  EXPECT_EQ(folder.unet->config.at("sample_size"), 16);
  EXPECT_EQ(folder.vae->class_name, "AutoencoderKL");
  EXPECT_EQ(folder.vae->config.at("scaling_factor"), 0.18215);
  EXPECT_EQ(folder.text_encoder->class_name, "CLIPTextModel");
  EXPECT_EQ(folder.text_encoder->weights_file, root.path() / "text_encoder" / "model.safetensors");
  EXPECT_EQ(folder.tokenizer->class_name, "CLIPTokenizer");
  EXPECT_EQ(folder.tokenizer->vocab_file, root.path() / "tokenizer" / "vocab.json");
  EXPECT_EQ(folder.tokenizer->merges_file, root.path() / "tokenizer" / "merges.txt");
  EXPECT_EQ(folder.tokenizer->tokenizer_config.at("model_max_length"), 77);
  EXPECT_EQ(folder.tokenizer->special_tokens_map.at("pad_token"), "<|endoftext|>");
  EXPECT_EQ(folder.scheduler->class_name, "PNDMScheduler");
  EXPECT_EQ(folder.scheduler->config.at("beta_schedule"), "scaled_linear");

  auto text_encoder = load_clip_text_model(*folder.text_encoder);
  const auto io =
    sd1_fixtures::read_tensors(sd1_fixtures::folder() / "tiny_clip_text" / "io.safetensors");
  torch::NoGradGuard no_grad;
  const auto out = text_encoder->forward(io.at("input_ids"));
  const double error = sd1_fixtures::relative_error(out.last_hidden_state,
                                                    io.at("last_hidden_state"));
  std::printf("[ folder   ] text_encoder last_hidden_state max relative error %.3g\n", error);
  EXPECT_LE(error, 1e-4);
}

TEST(diffusers_folder, only_the_required_parts_are_read) {
  SKIP_WITHOUT_FIXTURES();
  temporary_folder root;
  tiny_sd::assemble(root.path());
  // A latent DiT's folder: no UNet at all.
  fs::remove_all(root.path() / "unet");
  set_model_index_entry(root.path(), "unet", nullptr);

  diffusers_folder_options dit_parts;
  dit_parts.required_parts = {diffusers_part::vae, diffusers_part::text_encoder,
                              diffusers_part::tokenizer};
  const auto folder = read_diffusers_folder(root.path(), dit_parts);
  EXPECT_FALSE(folder.unet);
  EXPECT_FALSE(folder.scheduler);
  EXPECT_TRUE(folder.vae && folder.text_encoder && folder.tokenizer);

  expect_mentions(read_error(root.path()),
                  {(root.path() / "model_index.json").string(), "lists no unet"});
}

TEST(diffusers_folder, a_missing_part_names_the_folder_or_model_index) {
  SKIP_WITHOUT_FIXTURES();
  temporary_folder root;
  tiny_sd::assemble(root.path());
  fs::remove_all(root.path() / "vae");
  expect_mentions(read_error(root.path()), {(root.path() / "vae").string(), "missing"});

  set_model_index_entry(root.path(), "vae", nlohmann::json::array({nullptr, nullptr}));
  expect_mentions(read_error(root.path()),
                  {(root.path() / "model_index.json").string(), "vae", "[null, null]"});

  fs::remove(root.path() / "model_index.json");
  expect_mentions(read_error(root.path()), {(root.path() / "model_index.json").string()});
}

TEST(diffusers_folder, a_missing_or_broken_config_names_the_file) {
  SKIP_WITHOUT_FIXTURES();
  temporary_folder root;
  tiny_sd::assemble(root.path());
  const fs::path config = root.path() / "text_encoder" / "config.json";
  fs::remove(config);
  expect_mentions(read_error(root.path()), {config.string(), "missing"});

  write_text(config, "{\"hidden_size\": 32,");
  expect_mentions(read_error(root.path()), {config.string(), "not valid JSON"});

  write_text(config, "[32]");
  expect_mentions(read_error(root.path()), {config.string(), "JSON object"});

  const fs::path scheduler = root.path() / "scheduler" / "scheduler_config.json";
  fs::remove(scheduler);
  diffusers_folder_options scheduler_only;
  scheduler_only.required_parts = {diffusers_part::scheduler};
  expect_mentions(read_error(root.path(), scheduler_only), {scheduler.string(), "missing"});
}

TEST(diffusers_folder, pickled_weights_are_refused_with_a_way_out) {
  SKIP_WITHOUT_FIXTURES();
  temporary_folder root;
  tiny_sd::assemble(root.path());
  fs::remove(root.path() / "vae" / "diffusion_pytorch_model.safetensors");
  write_text(root.path() / "vae" / "diffusion_pytorch_model.bin", "not really a pickle");
  expect_mentions(read_error(root.path()),
                  {(root.path() / "vae").string(), "diffusion_pytorch_model.bin", "pickle",
                   "safe_serialization=True"});
}

TEST(diffusers_folder, a_truncated_weights_file_is_named) {
  SKIP_WITHOUT_FIXTURES();
  temporary_folder root;
  tiny_sd::assemble(root.path());
  const fs::path weights = root.path() / "vae" / "diffusion_pytorch_model.safetensors";
  const auto bytes = read_bytes(weights);
  write_text(weights, bytes.substr(0, bytes.size() / 2));
  expect_mentions(read_error(root.path()), {weights.string()});
}

TEST(diffusers_folder, a_wrong_shape_names_the_file_and_the_key) {
  SKIP_WITHOUT_FIXTURES();
  temporary_folder root;
  tiny_sd::assemble(root.path());
  const fs::path weights = root.path() / "text_encoder" / "model.safetensors";
  auto content = read_safetensors_file(weights);
  const std::string key = "text_model.embeddings.position_embedding.weight";
  for (auto& stored : content.tensors)
    if (stored.name == key) {
      stored.shape[0] -= 1; // 76 positions
      stored.data.resize(stored.data.size() / 77 * 76);
    }
  fs::remove(weights);
  write_safetensors_file(weights, content);

  const auto folder = read_diffusers_folder(root.path()); // the header itself is sound
  try {
    load_clip_text_model(*folder.text_encoder);
    FAIL() << "loaded 76 positions into a 77-position model";
  } catch (const std::runtime_error& e) {
    expect_mentions(e.what(), {weights.string(), key, "[76, 32]"});
  }
}

TEST(diffusers_folder, unknown_classes_are_named) {
  SKIP_WITHOUT_FIXTURES();
  temporary_folder root;
  tiny_sd::assemble(root.path());
  const auto index = (root.path() / "model_index.json").string();

  set_model_index_entry(root.path(), "unet", nlohmann::json::array({"diffusers", "UNet2DModel"}));
  expect_mentions(read_error(root.path()), {index, "UNet2DModel", "UNet2DConditionModel"});
  set_model_index_entry(root.path(), "unet",
                        nlohmann::json::array({"diffusers", "UNet2DConditionModel"}));

  set_model_index_entry(root.path(), "scheduler",
                        nlohmann::json::array({"diffusers", "KarrasVeScheduler"}));
  expect_mentions(read_error(root.path()), {index, "KarrasVeScheduler"});
  set_model_index_entry(root.path(), "scheduler",
                        nlohmann::json::array({"diffusers", "PNDMScheduler"}));

  // A config that records another class than model_index.json: parts of different models.
  const fs::path config = root.path() / "text_encoder" / "config.json";
  auto text_config = nlohmann::json::parse(read_bytes(config));
  text_config["architectures"] = {"CLIPTextModelWithProjection"};
  write_text(config, text_config.dump(2));
  expect_mentions(read_error(root.path()), {config.string(), "CLIPTextModelWithProjection"});

  expect_mentions(
    [&] {
      try {
        read_diffusers_model_part(root.path() / "vae", "VQModel");
      } catch (const diffusers_folder_error& e) {
        return std::string(e.what());
      }
      return std::string("(no error)");
    }(),
    {(root.path() / "vae").string(), "VQModel"});
}

TEST(diffusers_folder, full_precision_is_preferred_unless_a_variant_is_asked_for) {
  SKIP_WITHOUT_FIXTURES();
  temporary_folder root;
  tiny_sd::assemble(root.path());
  const fs::path full = root.path() / "text_encoder" / "model.safetensors";
  const fs::path half = root.path() / "text_encoder" / "model.fp16.safetensors";
  write_fp16_text_encoder(half);

  diffusers_folder_options options;
  EXPECT_EQ(read_diffusers_folder(root.path(), options).text_encoder->weights_file, full);

  options.variant = fp16_variant;
  const auto folder = read_diffusers_folder(root.path(), options);
  EXPECT_EQ(folder.text_encoder->weights_file, half);
  EXPECT_EQ(folder.text_encoder->weights_variant, "fp16");
  // Parts without the variant fall back to full precision, as diffusers does per part.
  EXPECT_EQ(folder.unet->weights_file,
            root.path() / "unet" / "diffusion_pytorch_model.safetensors");
  EXPECT_EQ(folder.unet->weights_variant, "");

  // The half-precision weights load into the float32 model and still match closely.
  auto text_encoder = load_clip_text_model(*folder.text_encoder);
  const auto io =
    sd1_fixtures::read_tensors(sd1_fixtures::folder() / "tiny_clip_text" / "io.safetensors");
  torch::NoGradGuard no_grad;
  const double error = sd1_fixtures::relative_error(
    text_encoder->forward(io.at("input_ids")).last_hidden_state, io.at("last_hidden_state"));
  std::printf("[ folder   ] fp16 text_encoder last_hidden_state max relative error %.3g\n", error);
  EXPECT_LE(error, 1e-2);

  // Only the variant there: taken without being asked for.
  fs::remove(full);
  options.variant.clear();
  const auto only_half = read_diffusers_folder(root.path(), options);
  EXPECT_EQ(only_half.text_encoder->weights_file, half);
  EXPECT_EQ(only_half.text_encoder->weights_variant, "fp16");

  fs::remove(half);
  expect_mentions(read_error(root.path()),
                  {(root.path() / "text_encoder").string(), "model.safetensors",
                   "model.fp16.safetensors"});
}

TEST(diffusers_folder, scheduler_configs_with_python_infinity_read) {
  SKIP_WITHOUT_FIXTURES();
  const fs::path dpm = sd1_fixtures::folder() / "schedulers" / "epsilon" / "dpmsolver_multistep" /
                       "scheduler_config.json";
  const auto why = sd1_fixtures::missing(dpm);
  if (!why.empty())
    GTEST_SKIP() << why;
  temporary_folder root;
  tiny_sd::assemble(root.path());
  fs::remove(root.path() / "scheduler" / "scheduler_config.json");
  fs::create_symlink(dpm, root.path() / "scheduler" / "scheduler_config.json");
  set_model_index_entry(root.path(), "scheduler",
                        nlohmann::json::array({"diffusers", "DPMSolverMultistepScheduler"}));

  const auto folder = read_diffusers_folder(root.path());
  const double lambda_min_clipped = folder.scheduler->config.at("lambda_min_clipped");
  EXPECT_TRUE(std::isinf(lambda_min_clipped) && lambda_min_clipped < 0);
}

TEST(diffusers_folder, write_back_gives_a_folder_that_reads_back_with_the_new_unet) {
  SKIP_WITHOUT_FIXTURES();
  temporary_folder work;
  const fs::path source_root = work.path() / "source";
  const fs::path written_root = work.path() / "fine_tuned";
  tiny_sd::assemble(source_root);
  // A stale half-precision UNet beside the full one must not survive the write-back.
  tiny_sd::link_fixture(sd1_fixtures::folder() / "tiny_unet" / "diffusion_pytorch_model.safetensors",
               source_root / "unet" / "diffusion_pytorch_model.fp16.safetensors");
  const auto source = read_diffusers_folder(source_root);

  auto unet = module_shaped_like(source.unet->weights_file);
  load_module_state(*unet, source.unet->weights_file);
  {
    torch::NoGradGuard no_grad;
    for (auto& parameter : unet->parameters())
      parameter.add_(0.25); // "fine-tuned"
  }
  write_diffusers_folder_with_unet(source, *unet, written_root);

  const auto written = read_diffusers_folder(written_root);
  EXPECT_EQ(written.unet->weights_file,
            written_root / "unet" / "diffusion_pytorch_model.safetensors");
  EXPECT_FALSE(fs::exists(written_root / "unet" / "diffusion_pytorch_model.fp16.safetensors"));

  const safetensors_reader reader(written.unet->weights_file);
  EXPECT_EQ(reader.metadata().at("format"), "pt");
  const auto state = module_state(*unet);
  ASSERT_EQ(reader.entries().size(), state.size());
  const auto tensors = sd1_fixtures::read_tensors(written.unet->weights_file);
  for (size_t i = 0; i < state.size(); ++i) {
    EXPECT_EQ(reader.entries()[i].name, state[i].first) << "state_dict order at " << i;
    EXPECT_TRUE(torch::equal(tensors.at(state[i].first), state[i].second)) << state[i].first;
  }

  EXPECT_EQ(read_bytes(written_root / "model_index.json"),
            read_bytes(source_root / "model_index.json"));
  EXPECT_EQ(read_bytes(written.unet->config_file), read_bytes(source.unet->config_file));
  for (const auto* file : {"vae/diffusion_pytorch_model.safetensors", "text_encoder/model.safetensors",
                           "tokenizer/vocab.json", "tokenizer/merges.txt",
                           "scheduler/scheduler_config.json"}) {
    EXPECT_FALSE(fs::is_symlink(written_root / file)) << file;
    EXPECT_EQ(read_bytes(written_root / file), read_bytes(source_root / file)) << file;
  }
}

TEST(diffusers_folder, write_back_refuses_an_existing_destination_and_a_module_that_does_not_fit) {
  SKIP_WITHOUT_FIXTURES();
  temporary_folder work;
  const fs::path source_root = work.path() / "source";
  tiny_sd::assemble(source_root);
  const auto source = read_diffusers_folder(source_root);
  auto unet = module_shaped_like(source.unet->weights_file);

  fs::create_directories(work.path() / "taken");
  try {
    write_diffusers_folder_with_unet(source, *unet, work.path() / "taken");
    FAIL() << "wrote over an existing folder";
  } catch (const diffusers_folder_error& e) {
    expect_mentions(e.what(), {(work.path() / "taken").string(), "already exists"});
  }

  unet->register_parameter("surplus", torch::zeros({2}));
  try {
    write_diffusers_folder_with_unet(source, *unet, work.path() / "fine_tuned");
    FAIL() << "wrote a module with a key the UNet does not have";
  } catch (const diffusers_folder_error& e) {
    expect_mentions(e.what(), {source.unet->weights_file.string(), "surplus"});
  }
  EXPECT_FALSE(fs::exists(work.path() / "fine_tuned"));
  // Nothing half-written is left beside it either.
  for (const auto& entry : fs::directory_iterator(work.path()))
    EXPECT_TRUE(entry.path().filename() == "source" || entry.path().filename() == "taken")
      << entry.path();
}

} // namespace
} // namespace ddactor
